"""A K210 without the board: boot-ROM ISP, kflash's flash stub and a 16 MiB SPI flash, for kflash to talk to.

`K210IspEmulator` models the chip as kflash 1.1.6 sees it over its serial port:

- Reset wiring. USB-serial boards drive RESET and BOOT (IO16) from DTR/RTS: "dan" wiring (Dan dock,
  Maix Bit, goD, trainer) has RTS on RESET and DTR on IO16; "kd233" wiring (KD233, Maix Go/goE,
  bit_mic) swaps them; "none" has no auto-reset, so kflash cannot get in. An asserted line pulls
  its pin low. IO16 is sampled when the chip leaves reset, lazily at the next byte exchanged, since
  kflash releases RESET and pulls IO16 low in two calls a few microseconds apart.
- Boot ROM (115200 baud): SLIP frames `<u16 op><u16 0><u32 crc32(rest)><u32 address><u32 length>data`,
  replies `[op, status]`. 0xC2 NOP (kflash sends it with a zero CRC, so it is not checked),
  0xC3 write to SRAM (kflash sends the stub in 1 KiB frames to 0x80000000), 0xC5 boot (no reply),
  0xC6 baud change (no reply).
- Flash stub (115200 baud until 0xD6): 0xD2 NOP, 0xD6 baud (no reply), 0xD7 flash init,
  0xD8/0xD9 erase and status, 0xD4 write (kflash sends 64 KiB frames; each write erases the
  sectors it touches first, as a NOR flash must), 0xD5 reboot.
- Baud rate. Bytes sent at a rate more than 3 % off the chip's current rate are lost on the way in
  and arrive as garbage on the way out.
- Time. `clock` is a `VirtualClock`; the emulated port advances it by the wire time of each byte
  and by the read timeout when nothing is waiting, and `emulated_kflash` makes kflash sleep on it,
  so kflash's retries and timeouts (90 s per write) cost no real time.

Faults (`Fault`) make chosen requests go wrong: busy answers, garbled or missing replies, bad
checksums, refused writes, or the board dying mid-run.
"""

from __future__ import annotations

import binascii
import contextlib
import re
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from .layout import FLASH_SIZE, SECTOR_SIZE, read_firmware_image

SLIP_END, SLIP_ESC = 0xC0, 0xDB
ROM_BAUD = 115_200
SRAM_BASE = 0x80000000
SRAM_SIZE = 8 * 1024 * 1024  # 6 MiB general SRAM + 2 MiB AI SRAM
BAUD_TOLERANCE = 0.03

# Boot ROM operations
ROM_NOP, ROM_MEMORY_WRITE, ROM_MEMORY_READ, ROM_BOOT, ROM_BAUD_SET = 0xC2, 0xC3, 0xC4, 0xC5, 0xC6
# Flash stub operations
STUB_NOP, STUB_ERASE, STUB_WRITE, STUB_REBOOT = 0xD2, 0xD3, 0xD4, 0xD5
STUB_BAUD_SET, STUB_FLASH_INIT, STUB_ERASE_NONBLOCKING, STUB_STATUS = 0xD6, 0xD7, 0xD8, 0xD9
# Reply status codes
OK, BAD_DATA_LEN, BAD_CHECKSUM, INVALID_COMMAND, BAD_INIT, BAD_ERASE, BAD_WRITE, BUSY = range(0xE0, 0xE8)

# Ops whose frames kflash sends with a real CRC32; NOPs, reboot and status go out as zeros.
_CHECKED_OPS = {
    ROM_MEMORY_WRITE,
    ROM_BOOT,
    ROM_BAUD_SET,
    STUB_WRITE,
    STUB_BAUD_SET,
    STUB_FLASH_INIT,
    STUB_ERASE_NONBLOCKING,
}
_DATA_OPS = {ROM_MEMORY_WRITE, ROM_BAUD_SET, STUB_WRITE, STUB_BAUD_SET}
_WIRING = {"dan": ("rts", "dtr"), "kd233": ("dtr", "rts")}  # name -> (line on RESET, line on IO16)
FAULT_KINDS = ("busy", "garble", "no_reply", "lose_request", "bad_checksum", "bad_write", "die")
_INVALID_ESCAPE = re.compile(rb"\xdb(?![\xdc\xdd])|\xdb$")


class VirtualClock:
    """time.time/time.sleep for kflash that only move when told to."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, float(seconds))


@dataclass
class Fault:
    """Make requests with opcode `op` misbehave: let `skip` through, then hit `times` (None: all)."""

    op: int
    kind: str
    skip: int = 0
    times: int | None = 1
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")

    def fires(self) -> bool:
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


@dataclass
class FlashWrite:
    address: int
    length: int


@dataclass
class K210IspEmulator:
    wiring: str = "dan"
    expected_stub: bytes | None = None  # when set, 0xC5 only boots if SRAM holds exactly this
    flash_size: int = FLASH_SIZE
    erase_size: int = SECTOR_SIZE
    clock: VirtualClock = field(default_factory=VirtualClock)
    present: bool = True  # False: the port does not exist (opening it fails)
    alive: bool = True  # False: nothing ever answers (no board on the cable)

    def __post_init__(self) -> None:
        if self.wiring not in (*_WIRING, "none"):
            raise ValueError(f"wiring must be 'dan', 'kd233' or 'none', not {self.wiring!r}")
        self.flash = bytearray(b"\xff") * self.flash_size
        self.sram = bytearray(SRAM_SIZE)
        self.stage = "app"  # "reset", "rom", "stub", "app", "crashed", "dead"
        self.baud = ROM_BAUD
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, int, int | None]] = []  # (stage, op, status replied or None)
        self.flash_writes: list[FlashWrite] = []
        self.boots: list[str] = []  # "rom", "firmware", "no-firmware"
        self.booted_firmware: bytes | None = None
        self.wire_bytes = 0
        self._sram_loaded: list[tuple[int, int]] = []
        self._flash_ready = False
        self._erase_polls = 0
        self._lines = {"dtr": False, "rts": False}
        self._pending_boot = False
        self._rx = bytearray()
        self._tx: deque[tuple[int, bytes]] = deque()  # (baud it was sent at, bytes)

    # ---- what the emulated serial port calls -------------------------------------------------
    def set_lines(self, *, dtr: bool | None = None, rts: bool | None = None) -> None:
        if dtr is not None:
            self._lines["dtr"] = bool(dtr)
        if rts is not None:
            self._lines["rts"] = bool(rts)
        if self.wiring == "none" or not self.alive:
            return
        reset_line, _ = _WIRING[self.wiring]
        if self._lines[reset_line]:
            self.stage, self._pending_boot = "reset", False
        elif self.stage == "reset":
            self._pending_boot = True  # IO16 is sampled once the chip is running again

    def port_closed(self) -> None:
        """Closing the port drops DTR and RTS (HUPCL); a reboot the stub started completes now."""
        self.set_lines(dtr=False, rts=False)
        if self.stage == "rebooting":
            self._pending_boot = True
        self._settle()

    def host_write(self, data: bytes, host_baud: int) -> None:
        self.wire_bytes += len(data)
        self._settle()
        if self.stage not in ("rom", "stub") or not _same_baud(host_baud, self.baud):
            return  # nobody listening, or the bytes arrive as noise the SLIP decoder drops
        self._rx += data
        for frame in self._frames():
            self._handle(frame)

    def host_read(self, size: int, host_baud: int) -> bytes:
        self._settle()
        out = bytearray()
        while self._tx and len(out) < size:
            sent_baud, chunk = self._tx.popleft()
            take = chunk[: size - len(out)]
            if len(take) < len(chunk):
                self._tx.appendleft((sent_baud, chunk[len(take) :]))
            out += take if _same_baud(host_baud, sent_baud) else bytes(len(take))
        return bytes(out)

    def output_waiting(self) -> int:
        return sum(len(chunk) for _, chunk in self._tx)

    def discard_output(self) -> None:
        self._tx.clear()

    # ---- inspection helpers for tests --------------------------------------------------------
    def flash_at(self, address: int, length: int) -> bytes:
        return bytes(self.flash[address : address + length])

    def sram_at(self, address: int, length: int) -> bytes:
        return bytes(self.sram[address - SRAM_BASE : address - SRAM_BASE + length])

    def replies(self, op: int) -> list[int | None]:
        return [status for _stage, request_op, status in self.requests if request_op == op]

    # ---- chip behaviour ----------------------------------------------------------------------
    def _settle(self) -> None:
        if not self._pending_boot:
            return
        self._pending_boot = False
        self._rx.clear()
        _, boot_line = _WIRING.get(self.wiring, ("", ""))
        if boot_line and self._lines[boot_line]:
            self.stage, self.baud = "rom", ROM_BAUD
            self._sram_loaded.clear()
            self.boots.append("rom")
        else:
            self._boot_from_flash()

    def _boot_from_flash(self) -> None:
        self.baud = ROM_BAUD
        image = read_firmware_image(self.flash)
        if image is None:
            self.stage = "crashed"
            self.boots.append("no-firmware")
            self._send(b"boot failed: no valid firmware at 0x0\r\n")
        else:
            self.stage = "app"
            self.booted_firmware = image[1]
            self.boots.append("firmware")
            self._send(b"\r\nfirmware running\r\n")

    def _frames(self) -> Iterator[bytes | None]:
        """Complete SLIP frames in the receive buffer, unescaped; None for a frame with a bad escape."""
        while True:
            start = self._rx.find(SLIP_END)
            if start < 0:
                self._rx.clear()
                return
            end = self._rx.find(SLIP_END, start + 1)
            if end < 0:
                del self._rx[:start]
                return
            if end == start + 1:  # back-to-back delimiters: the second one opens the next frame
                del self._rx[: start + 1]
                continue
            raw = bytes(self._rx[start + 1 : end])
            del self._rx[: end + 1]
            if _INVALID_ESCAPE.search(raw):
                yield None
            else:
                yield raw.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")

    def _handle(self, frame: bytes | None) -> None:
        if frame is None or len(frame) < 2:
            self._reply(ROM_NOP if self.stage == "rom" else STUB_NOP, BAD_DATA_LEN)
            return
        op, stage = frame[0], self.stage
        fault = next((f for f in self.faults if f.op == op and f.fires()), None)
        if fault is not None and self._apply_fault(fault, op, frame):
            return
        status = self._execute(op, frame)
        self.requests.append((stage, op, status))
        if status is not None:
            self._reply(op, status)

    def _apply_fault(self, fault: Fault, op: int, frame: bytes) -> bool:
        """Act out the fault; True when the request must not be served normally."""
        stage = self.stage
        if fault.kind == "die":
            self.stage, self.alive = "dead", False
            self.requests.append((stage, op, None))
            return True
        if fault.kind == "lose_request":
            self.requests.append((stage, op, None))
            return True
        if fault.kind in ("busy", "bad_checksum", "bad_write"):
            status = {"busy": BUSY, "bad_checksum": BAD_CHECKSUM, "bad_write": BAD_WRITE}[fault.kind]
            self.requests.append((stage, op, status))
            self._reply(op, status)
            return True
        status = self._execute(op, frame)  # "garble" and "no_reply": the work is done, the answer is lost
        self.requests.append((stage, op, None))
        if fault.kind == "garble" and status is not None:
            self._send_frame(bytes([op ^ 0xFF, status ^ 0xFF]))
        return True

    def _execute(self, op: int, frame: bytes) -> int | None:
        """Carry out one request; the status to reply, or None when this op gets no reply."""
        if op in (ROM_NOP, STUB_NOP):
            return OK if op == (ROM_NOP if self.stage == "rom" else STUB_NOP) else INVALID_COMMAND
        if op == STUB_REBOOT and self.stage == "stub":
            self._reply(op, OK)
            self.stage = "rebooting"  # runs again once kflash lets go of the port (see port_closed)
            return None
        if op == STUB_STATUS and self.stage == "stub":
            if self._erase_polls:
                self._erase_polls -= 1
                return BUSY
            return OK
        request = _parse_request(frame, carries_data=op in _DATA_OPS)
        if request is None:
            return BAD_DATA_LEN
        checksum, address, length, data = request
        if op in _CHECKED_OPS and checksum != binascii.crc32(frame[8:]) & 0xFFFFFFFF:
            return BAD_CHECKSUM
        if self.stage == "rom":
            return self._execute_rom(op, address, data)
        return self._execute_stub(op, address, length, data)

    def _execute_rom(self, op: int, address: int, data: bytes) -> int | None:
        if op == ROM_MEMORY_WRITE:
            offset = address - SRAM_BASE
            if offset < 0 or offset + len(data) > SRAM_SIZE:
                return BAD_DATA_LEN
            self.sram[offset : offset + len(data)] = data
            self._sram_loaded.append((address, len(data)))
            return OK
        if op == ROM_BAUD_SET and len(data) == 4:
            self.baud = struct.unpack("<I", data)[0]
            return None
        if op == ROM_BOOT:
            self._boot_sram(address)
            return None
        return INVALID_COMMAND

    def _boot_sram(self, address: int) -> None:
        if self.expected_stub is not None:
            loaded = self.sram_at(address, len(self.expected_stub)) == self.expected_stub
        else:
            loaded = any(start <= address < start + length for start, length in self._sram_loaded)
        if not loaded:
            self.stage = "crashed"  # jumped into garbage: silence from now on
            return
        self.stage, self.baud, self._flash_ready = "stub", ROM_BAUD, False

    def _execute_stub(self, op: int, address: int, length: int, data: bytes) -> int | None:
        if op == STUB_BAUD_SET and len(data) == 4:
            self.baud = struct.unpack("<I", data)[0]
            return None
        if op == STUB_FLASH_INIT:
            self._flash_ready = True
            return OK
        if op not in (STUB_WRITE, STUB_ERASE_NONBLOCKING):
            return INVALID_COMMAND
        if not self._flash_ready:
            return BAD_INIT
        if op == STUB_ERASE_NONBLOCKING:  # kflash's "erase all" sends address 0, length 0
            return self._erase(address, length or len(self.flash) - address)
        if address + len(data) > len(self.flash):
            return BAD_WRITE
        self._erase_span(address, len(data))
        self.flash[address : address + len(data)] = data
        self.flash_writes.append(FlashWrite(address, len(data)))
        return OK

    def _erase(self, address: int, length: int) -> int:
        if address % SECTOR_SIZE or length % SECTOR_SIZE or address + length > len(self.flash):
            return BAD_ERASE
        self.flash[address : address + length] = b"\xff" * length
        self._erase_polls = 2
        return OK

    def _erase_span(self, address: int, length: int) -> None:
        first = address - address % self.erase_size
        last = -(-(address + length) // self.erase_size) * self.erase_size
        self.flash[first:last] = b"\xff" * (last - first)

    def _reply(self, op: int, status: int) -> None:
        self._send_frame(bytes([op, status]))

    def _send_frame(self, payload: bytes) -> None:
        escaped = payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
        self._send(b"\xc0" + escaped + b"\xc0")

    def _send(self, data: bytes) -> None:
        if self.stage != "dead":
            self._tx.append((self.baud, bytes(data)))


def _parse_request(frame: bytes, *, carries_data: bool) -> tuple[int, int, int, bytes] | None:
    """(crc32 field, address, length, data) of a request, or None if its length is inconsistent.

    For ops that carry data the length field counts the bytes that follow; for the others (boot,
    flash init, erase) it is a parameter and nothing follows the 16-byte header.
    """
    if len(frame) < 16:
        return None
    checksum, address, length = struct.unpack_from("<III", frame, 4)
    expected = 16 + length if carries_data else 16
    if len(frame) != expected:
        return None
    return checksum, address, length, bytes(frame[16:])


def _same_baud(a: int, b: int) -> bool:
    return abs(a - b) <= BAUD_TOLERANCE * b


class EmulatedSerial:
    """The part of serial.Serial that kflash 1.1.6 uses, connected to a K210IspEmulator."""

    def __init__(self, emulator: K210IspEmulator, port: str | None = None, baudrate: int = 9600, timeout=None, **_):
        import serial

        if not emulator.present:
            raise serial.SerialException(f"could not open port {port}: [Errno 2] No such file or directory: '{port}'")
        self._emulator = emulator
        self.port = port
        self._baudrate = int(baudrate)
        self.timeout = timeout
        self._dtr = self._rts = True  # pyserial asserts both lines when it opens a port
        self.is_open = False
        self.open()

    # lines and state
    def open(self) -> None:
        self.is_open = True
        self._emulator.set_lines(dtr=self._dtr, rts=self._rts)

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self._emulator.port_closed()

    def isOpen(self) -> bool:  # noqa: N802 - pyserial 2 name that kflash calls
        return self.is_open

    @property
    def baudrate(self) -> int:
        return self._baudrate

    @baudrate.setter
    def baudrate(self, value: int) -> None:
        self._baudrate = int(value)

    def setDTR(self, value: bool = True) -> None:  # noqa: N802
        self._dtr = bool(value)
        self._emulator.set_lines(dtr=self._dtr)

    def setRTS(self, value: bool = True) -> None:  # noqa: N802
        self._rts = bool(value)
        self._emulator.set_lines(rts=self._rts)

    dtr = property(lambda self: self._dtr, setDTR)
    rts = property(lambda self: self._rts, setRTS)

    # data
    def write(self, data: bytes) -> int:
        self._require_open()
        data = bytes(data)
        self._emulator.clock.sleep(len(data) * 10 / self._baudrate)  # 8N1: ten bit times a byte
        self._emulator.host_write(data, self._baudrate)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self._require_open()
        data = self._emulator.host_read(size, self._baudrate)
        if data:
            self._emulator.clock.sleep(len(data) * 10 / self._baudrate)
        else:
            self._emulator.clock.sleep(self.timeout or 0.0)
        return data

    def inWaiting(self) -> int:  # noqa: N802
        return self._emulator.output_waiting()

    in_waiting = property(inWaiting)

    def flushInput(self) -> None:  # noqa: N802
        self._emulator.discard_output()

    def flushOutput(self) -> None:  # noqa: N802
        pass

    reset_input_buffer = flushInput
    reset_output_buffer = flushOutput

    def _require_open(self) -> None:
        if not self.is_open:
            import serial

            raise serial.SerialException("Attempting to use a port that is not open")


@contextlib.contextmanager
def emulated_kflash(emulator: K210IspEmulator, port: str = "emulated://k210") -> Iterator[str]:
    """Within the block, kflash opening `port` talks to `emulator` and sleeps on its virtual clock."""
    from unittest import mock

    import kflash
    import serial

    real_serial = serial.Serial

    def open_port(*args, **kwargs):
        name = kwargs.get("port", args[0] if args else None)
        if name != port:
            return real_serial(*args, **kwargs)
        kwargs.pop("port", None)
        return EmulatedSerial(emulator, port, *args[1:], **kwargs)

    with mock.patch.object(serial, "Serial", open_port), mock.patch.object(kflash, "time", emulator.clock):
        yield port
