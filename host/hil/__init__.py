"""`k210 hil`: stream a test set through boards over serial links and compare three ways.

    ports.py     open any pyserial URL; read what came without busy-waiting; count bytes
    messages.py  what board and host say (Hello, ModelInfo, Tensor, Message) and board errors
    channel.py   frames in and out of one port (k210wire), as messages
    session.py   one board: handshake, model check, upload, pipelined inference with recovery
    framesize.py frame size from the error rate measured on the line
    client.py    the same session as plain calls (hello, infer, ...) for scripts and runner tests
    handlers.py  where boards come from: a serial device, a virtual board, any runner process
    work.py      the images still to do, shared by the boards
    journal.py   every result as it arrives (JSON lines), for --resume
    report.py    board vs TF vs simulator, latency, link figures; the text summary
    plots.py     the PNGs of --report
    run.py       all of it in order
"""
