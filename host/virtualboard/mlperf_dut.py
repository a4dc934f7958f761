# mlperf_dut.py: an MLPerf-Tiny / EEMBC-runner-style device under test, for comparison benchmarks.
#
# The text protocol those runners use: ASCII commands ending in '%'; the input goes in with
# `db load N` and then `db <hex>` chunks, each acknowledged with `m-ready` (stop and wait); `infer N W`
# runs the model and prints `m-results-[...]`. Written like a MicroPython board script (no f-strings,
# buffers allocated once) and run by `k210 board --firmware mlperf-tiny` on the same virtual UART
# and KPU as main.py, so both protocols are measured on the same line.
# ruff: noqa: UP031

import gc

import utime

CONFIG = {
    "baud": 1500000,
    "tx_pin": 10,
    "rx_pin": 11,
    "read_buf_len": 4096,
    "model": None,
    "model_size": 0,
    "input_path": "/sd/k210_input.bin",
    "max_input": 32768,
}


def load_config():
    config = dict(CONFIG)
    try:
        import k210_config

        for key in CONFIG:
            if key in k210_config.CONFIG:
                config[key] = k210_config.CONFIG[key]
    except ImportError:
        pass
    return config


class Dut:
    def __init__(self, uart, kpu, config):
        self.uart = uart
        self.kpu = kpu
        self.input_path = config["input_path"]
        self.buf = bytearray(config["max_input"])
        self.expected = 0
        self.filled = 0
        self.command = bytearray()

    def say(self, text):
        self.uart.write(text + "\r\n")

    def feed(self, data):
        for b in data:
            if b == 0x25:  # '%' ends a command
                self.run(bytes(self.command).decode().strip())
                self.command = bytearray()
            elif len(self.command) < 256:
                self.command.append(b)

    def run(self, line):
        words = line.split()
        if not words:
            self.say("m-ready")
            return
        if words[0] == "name":
            self.say("m-name-dut-[k210-virtual]")
        elif words[0] == "db" and len(words) == 3 and words[1] == "load":
            self.expected = int(words[2])
            self.filled = 0
            if self.expected > len(self.buf):
                self.say("e-[Buffer too small]")
            else:
                self.say("m-[Expecting %d bytes]" % self.expected)
        elif words[0] == "db" and len(words) == 2:
            self.take_hex(words[1])
        elif words[0] == "infer" and len(words) >= 2:
            self.infer(int(words[1]), int(words[2]) if len(words) > 2 else 0)
        else:
            self.say("e-[Unknown command: %s]" % line)
        self.say("m-ready")

    def take_hex(self, text):
        n = len(text) // 2
        if self.filled + n > self.expected:
            self.say("e-[Too many bytes]")
            return
        for i in range(n):
            self.buf[self.filled + i] = int(text[2 * i:2 * i + 2], 16)
        self.filled += n

    def infer(self, iterations, warmups):
        if self.filled != self.expected or self.kpu is None:
            self.say("e-[No input loaded]" if self.kpu is not None else "e-[No model loaded]")
            return
        with open(self.input_path, "wb") as f:
            f.write(memoryview(self.buf)[:self.filled])
        gc.collect()
        for _ in range(warmups):
            self.kpu.run_with_output(self.input_path, getlist=True)
        start = utime.ticks_us()
        self.say("m-lap-us-%d" % start)
        values = []
        for _ in range(max(1, iterations)):
            values = self.kpu.run_with_output(self.input_path, getlist=True)
        self.say("m-lap-us-%d" % utime.ticks_us())
        # EEMBC's th_results prints each value with three decimals.
        self.say("m-results-[" + ",".join("%0.3f" % v for v in values) + "]")


def main():
    from fpioa_manager import fm
    from machine import UART
    from maix import KPU

    config = load_config()
    fm.register(config["tx_pin"], fm.fpioa.UART1_TX)
    fm.register(config["rx_pin"], fm.fpioa.UART1_RX)
    uart = UART(UART.UART1, config["baud"], 8, None, 1, timeout=10, read_buf_len=config["read_buf_len"])
    kpu = None
    if config["model"] is not None:
        kpu = KPU()
        kpu.load_kmodel(config["model"], config["model_size"])
    dut = Dut(uart, kpu, config)
    dut.say("m-init-done")
    dut.say("m-ready")
    while True:
        data = uart.read(256)
        if data:
            dut.feed(data)


if __name__ == "__main__":
    main()
