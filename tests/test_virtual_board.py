"""The virtual board: faults, the paced line and RX ring, the KPU stand-ins, and main.py behind a pty/socket."""

from __future__ import annotations

import hashlib
import time
import types

import pytest
from hil_support import tiny_models

from k210.core.errors import BadInputError
from k210.firmware import k210wire as w
from k210.host.hil.handlers import virtual_board
from k210.host.hil.model import KModel
from k210.host.hil.ports import open_port
from k210.host.hil.session import BoardSession
from k210.host.virtualboard.faults import FaultInjector, FaultSpec
from k210.host.virtualboard.transport import Transport
from k210.host.virtualboard.uart import BoardReboot, RxRing, make_machine
from k210.host.virtualboard.wire import Line

# -- faults -------------------------------------------------------------------------------------


def test_fault_spec_parses_and_rejects_nonsense():
    spec = FaultSpec.parse("corrupt=1e-3,drop=1e-3,dup=1e-4,stall=1e-5,stall_ms=5,reset=500,dir=rx")
    assert (spec.corrupt, spec.drop, spec.dup, spec.stall, spec.stall_ms, spec.reset, spec.dir) == (
        1e-3, 1e-3, 1e-4, 1e-5, 5, 500, "rx")
    assert spec.active and not FaultSpec.parse(None).active and not FaultSpec.parse("none").active
    assert FaultSpec.parse(spec.to_text()) == spec
    for bad in ("corrupt", "bogus=1", "drop=2", "corrupt=x", "dir=up"):
        with pytest.raises(BadInputError, match="--faults"):
            FaultSpec.parse(bad)


def test_fault_injector_is_reproducible_and_counts():
    data = bytes(range(1, 256)) * 40 + b"\x00" * 200
    spec = FaultSpec(corrupt=0.01, drop=0.01, dup=0.01, stall=0.001, reset=20)
    a, b = FaultInjector(spec, seed=7), FaultInjector(spec, seed=7)
    fa, fb = a.apply(data, "rx"), b.apply(data, "rx")
    assert fa == fb and fa.data != data
    c = a.counts
    assert c.corrupted > 50 and c.dropped > 50 and c.duplicated > 50 and c.resets > 3
    assert len(fa.data) == len(data) - c.dropped + c.duplicated
    assert FaultInjector(spec, seed=8).apply(data, "rx").data != fa.data
    pieces = FaultInjector(spec, seed=7)  # the same stream in other stretches: the same faults
    assert b"".join(pieces.apply(data[i:i + 37], "rx").data for i in range(0, len(data), 37)) == fa.data
    assert FaultInjector(FaultSpec(corrupt=0.5, dir="rx"), 1).apply(data, "tx").data == data  # dir respected


# -- the line and the RX ring ---------------------------------------------------------------------


class MemoryTransport(Transport):
    """The host's end as two byte queues, for testing the line without a pty."""

    url = "memory"

    def __init__(self) -> None:
        self.from_host = bytearray()
        self.to_host = bytearray()

    def wait_readable(self, timeout):
        if not self.from_host:
            time.sleep(min(timeout or 0.01, 0.002))
        return bool(self.from_host)

    def read(self, limit):
        data = bytes(self.from_host[:limit])
        del self.from_host[:limit]
        return data

    def write(self, data):
        self.to_host += data
        return len(data)

    def close(self):
        pass


def _board_with_line(baud: int, **faults):
    transport = MemoryTransport()
    line = Line(transport, baud, FaultSpec(**faults), seed=1)
    fpioa = types.SimpleNamespace(uart_routed=lambda uart: True)
    board = types.SimpleNamespace(line=line, fpioa=fpioa, board_id=1, uart=None)
    return transport, line, make_machine(board)


def test_rx_ring_drops_what_does_not_fit():
    ring = RxRing(8)
    ring.push(b"0123456789")
    assert (len(ring), ring.dropped, ring.pop(3), ring.pop(99)) == (8, 2, b"012", b"34567")


def test_line_paces_host_bytes_and_the_ring_overflows_while_the_board_is_busy():
    transport, line, machine = _board_with_line(100_000)  # 10 000 bytes/s
    uart = machine.UART(machine.UART.UART1, 100_000, 8, None, 1, timeout=50, read_buf_len=1000)
    transport.from_host += bytes(range(256)) * 8  # 2048 bytes: 0.2 s on this line
    started = time.monotonic()
    first = uart.read(4096)
    assert first and len(first) < 1000  # only what the line delivered so far: read returns fewer bytes
    time.sleep(0.3)  # the board is "busy": the line fills the 1000-byte ring and the rest is lost
    rest = uart.read(4096)
    assert len(rest) == 1000 and rest == (bytes(range(256)) * 8)[len(first):len(first) + 1000]
    assert uart.ring.dropped == 2048 - len(first) - 1000
    assert time.monotonic() - started >= 0.2
    assert uart.read(10) is None  # nothing more: None after the timeout
    line.close()


def test_uart_write_is_paced_and_reset_faults_reboot_the_board():
    transport, line, machine = _board_with_line(50_000, reset=1, dir="rx")  # 5000 bytes/s; reset at a delimiter
    uart = machine.UART(machine.UART.UART1, 50_000, timeout=20, read_buf_len=256)
    started = time.monotonic()
    uart.write(b"x" * 250)
    assert time.monotonic() - started >= 0.045 and transport.to_host == b"x" * 250
    transport.from_host += b"abc\x00def"
    time.sleep(0.01)
    with pytest.raises(BoardReboot):
        for _ in range(20):
            uart.read(16)
    with pytest.raises(BoardReboot):
        machine.reset()
    with pytest.raises(ValueError):
        machine.UART(machine.UART.UART1, 0x600000)
    line.close()


# -- the KPU stand-ins -----------------------------------------------------------------------------


def _fake_board(tmp_path, kmodel: bytes):
    from k210.host.virtualboard.flash import Flash
    from k210.host.virtualboard.kpu import ModelCache

    flash = Flash()
    flash.write(0x300000, kmodel)
    path = tmp_path / "m.kmodel"
    path.write_bytes(kmodel)
    return types.SimpleNamespace(flash=flash, models=ModelCache()), path


@pytest.mark.slow
def test_kpu_standins_load_what_the_real_firmware_loads(tmp_path):
    from k210.converters.simulate import KModelSimulator
    from k210.host.virtualboard.kpu import make_canmv_maix, make_maixpy_kpu

    kmodel = tiny_models()["kmodel_a"].read_bytes()
    board, path = _fake_board(tmp_path, kmodel)
    maixpy = make_maixpy_kpu(board)
    with pytest.raises(ValueError, match="ERR_KMODEL_VERSION: only support kmodel V3/V4"):
        maixpy.load(0x300000)
    with pytest.raises(ValueError, match="only supply .kmodel"):
        maixpy.load("/sd/model.bin")
    kpu = make_canmv_maix(board).KPU()
    kpu.load_kmodel(0x300000, len(kmodel))
    raw = bytes(range(256)) * 3 + bytes(16)
    (tmp_path / "in.bin").write_bytes(raw)
    values = kpu.run_with_output(str(tmp_path / "in.bin"), getlist=True)
    import numpy as np

    expected = KModelSimulator(kmodel).run(np.frombuffer(raw, np.uint8))[0].ravel()
    assert np.array_equal(np.array(values, np.float32), expected)
    with pytest.raises(OSError, match="this build loads v5"):
        make_canmv_maix(board).KPU().load_kmodel(_v4(tmp_path))


def _v4(tmp_path) -> str:
    path = tmp_path / "old.kmodel"
    path.write_bytes(b"LDMK" + (4).to_bytes(4, "little") + bytes(64))
    return str(path)


# -- main.py behind a pty and a socket -------------------------------------------------------------


def _v5_stub(path: str = "tiny.kmodel") -> KModel:
    """Enough of a kmodel v5 for the board's first look at an upload (its 8-byte header)."""
    data = b"LDMK" + (5).to_bytes(4, "little") + bytes(120)
    return KModel(path, data, hashlib.sha256(data).hexdigest(), 5, ((w.DT_UINT8, (1, 28, 28, 1)),),
                  ((w.DT_FLOAT32, (1, 2)),))


@pytest.mark.parametrize("port", ["pty", "socket://127.0.0.1:0"])
def test_handshake_with_main_py(port):
    handler = virtual_board(port=port)
    url = handler.start()
    try:
        assert url.startswith("/dev/") if port == "pty" else url.startswith("socket://127.0.0.1:")
        session = BoardSession(open_port(url, 1_500_000), connect_timeout=10)
        hello = session.connect()
        assert (hello.firmware, hello.backend, hello.kmodel_versions) == ("k210-deploy-maixpy", "canmv", (5,))
        assert hello.rx_window == 4096 and hello.max_frame == 1024 and hello.max_model > 0
        assert not session.model_info().loaded
        with pytest.raises(BadInputError, match="the board has no model loaded; pass --upload"):
            session.ensure_model(_v5_stub(), upload=False)
        session.port.close()
    finally:
        handler.stop()


@pytest.mark.slow
def test_flashed_model_is_recognised_by_its_tensors():
    handler = virtual_board(kmodel=str(tiny_models()["kmodel_a"]))
    try:
        session = BoardSession(open_port(handler.start(), 1_500_000), connect_timeout=10)
        session.connect()
        info = session.model_info()
        assert info.loaded and info.source == "flash:0x300000" and info.sha256 == "0" * 64
        assert [(d.dtype, d.shape) for d in info.inputs] == [(w.DT_UINT8, (1, 28, 28, 1))]
        kmodel = KModel.from_bytes("a", tiny_models()["kmodel_a"].read_bytes())
        assert session.ensure_model(kmodel, upload=False) == "shapes"  # flashed: no hash on the board
        session.port.close()
    finally:
        handler.stop()


def test_maixpy_v1_profile_refuses_kmodel_v5():
    handler = virtual_board(firmware="maixpy")
    try:
        session = BoardSession(open_port(handler.start(), 1_500_000), connect_timeout=10)
        hello = session.connect()
        assert (hello.backend, hello.kmodel_versions) == ("maixpy-v1", (3, 4))
        kmodel = _v5_stub()
        with pytest.raises(BadInputError, match=r"loads v3/v4; tiny.kmodel is kmodel v5 \(kmodel v5 needs CanMV"):
            session.upload(kmodel)  # the harness knows from HELLO
        with pytest.raises(BadInputError, match="refused tiny.kmodel .UNSUPPORTED_KMODEL.: kmodel v5 .* MaixPy-v1"):
            session.upload(kmodel, check=False)  # and the firmware itself says no
        session.port.close()
    finally:
        handler.stop()


def test_reboot_request_restarts_main_py_with_a_new_nonce():
    handler = virtual_board()
    try:
        session = BoardSession(open_port(handler.start(), 1_500_000), connect_timeout=10)
        first = session.connect()
        seq, frame = session.channel.frame(w.REBOOT, b"")
        session.channel.write(frame)
        deadline = time.monotonic() + 10
        boot = None
        while boot is None and time.monotonic() < deadline:
            for msg in session.channel.poll(0.1):
                if msg.is_event and msg.type == w.HELLO:
                    boot = msg.fields
        assert boot is not None and boot["nonce"] != first.nonce
        session.port.close()
    finally:
        handler.stop()


def test_board_command_line_errors(cli, tmp_path):
    r = cli("board", "--faults", "corrupt=lots")
    assert r.code == 2 and "--faults: corrupt needs a number" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli("board", "--port", "tcp:1234")
    assert r.code == 2 and "expected 'pty' or socket://" in r.err
    r = cli("board", str(tmp_path / "none.kmodel"))
    assert r.code == 2 and "no such file" in r.err
    r = cli("board", "--faults", "close_at=5")
    assert r.code == 2 and "close_at needs a socket board" in r.err


# -- what real lines and boards do now and then (issue 13) ---------------------------------------------


def test_chunk_duplication_repeats_whole_chunks_by_stream_position():
    data = bytes(range(1, 251)) * 8
    spec = FaultSpec.parse("dupchunk=0.3,chunk=32")
    whole = FaultInjector(spec, seed=2).apply(data, "rx").data
    pieces = FaultInjector(spec, seed=2)
    assert b"".join(pieces.apply(data[i:i + 45], "rx").data for i in range(0, len(data), 45)) == whole
    repeated = (len(whole) - len(data)) // 32
    assert len(whole) == len(data) + 32 * repeated and 0.15 * len(data) / 32 < repeated < 0.45 * len(data) / 32
    out, k = bytearray(), 0  # every chunk is there, once or twice in a row
    for i in range(0, len(data), 32):
        chunk = data[i:i + 32]
        assert whole[k:k + len(chunk)] == chunk
        k += len(chunk)
        if whole[k:k + len(chunk)] == chunk and len(chunk) == 32:
            k += 32
        out += chunk
    assert k == len(whole) and bytes(out) == data


def test_one_off_events_land_on_the_nth_frame():
    spec = FaultSpec.parse("reset_at=3,silence_at=5,silence_s=2,close_at=7,boot_ms=3000")
    assert spec.boot_ms == 3000 and spec.closes and spec.active
    injector = FaultInjector(spec)
    frames = b"".join(bytes([1, 2, 3, 0]) for _ in range(8))
    first = injector.apply(frames[:10], "rx")  # frames 1, 2 and half of 3
    rest = injector.apply(frames[10:], "rx")
    assert first.resets == [] and first.events == []
    assert rest.resets == [11 - 10]
    assert rest.events == [(19 - 10, "silence"), (27 - 10, "close")]
    for bad in ("reset_at=1.5", "chunk=0", "silence_s=nan", "dupchunk=2"):
        with pytest.raises(BadInputError, match="--faults"):
            FaultSpec.parse(bad)


def test_a_silence_carries_nothing_either_way():
    line = Line(MemoryTransport(), 1_000_000, FaultSpec.parse("silence_at=1,silence_s=0.3"))
    try:
        line.transport.from_host += b"\x01\x02\x00" + b"\x05" * 10 + b"\x00"
        time.sleep(0.1)
        data, _ = line.take(time.monotonic())
        assert data == b"\x01\x02\x00"  # the first frame arrived; the line died after it
        line.transmit(b"lost")
        assert bytes(line.transport.to_host) == b""
        time.sleep(0.3)
        line.transmit(b"back")
        assert bytes(line.transport.to_host) == b"back"
    finally:
        line.close()


def test_no_board_leaves_a_temp_dir_behind(tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the board processes and this one: nothing else writes here
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for _ in range(2):  # stopped through stdin (--exit-with-parent: os._exit), and again
        handler = virtual_board()
        handler.start()
        handler.stop()
    assert list(scratch.iterdir()) == []
