"""A virtual K210 board: firmware/maixpy/main.py, unmodified, under CPython.

Host stand-ins replace the MicroPython modules main.py imports, one module each:

    uart.py     `machine`        UART over a paced line (RX ring that drops on overflow), reset()
    kpu.py      `KPU`, `maix`    MaixPy-v1 and CanMV KPU APIs over nncase's simulator
    fpioa.py    `fpioa_manager`  pin registrations
    clock.py    `utime`          ticks that wrap like MicroPython's
    heap.py     `gc`             MicroPython's gc API (collect() is cheap here)
    entropy.py  `urandom`        getrandbits for the boot nonce

wire.py paces both directions at baud/10 bytes per second and applies faults.py's seeded link and
board faults; transport.py is the other end of the line (a pseudo-terminal or a TCP socket);
board.py installs the stand-ins and boots main.py again whenever the board resets.
"""
