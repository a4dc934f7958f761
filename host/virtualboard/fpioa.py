"""Stand-in for MaixPy's `fpioa_manager`: which function each pin carries.

The numbers are the K210's FPIOA function codes for the UARTs (kendryte-standalone-sdk fpioa.h);
the virtual UART only reaches the host when main.py routed its RX and TX functions to pins.
"""

from __future__ import annotations

import types


class Fpioa:
    UARTHS_RX = 18
    UARTHS_TX = 19
    UART1_RX = 64
    UART1_TX = 65
    UART2_RX = 66
    UART2_TX = 67
    UART3_RX = 68
    UART3_TX = 69


_UART_FUNCTIONS = {1: (Fpioa.UART1_RX, Fpioa.UART1_TX), 2: (Fpioa.UART2_RX, Fpioa.UART2_TX),
                   3: (Fpioa.UART3_RX, Fpioa.UART3_TX)}


class FpioaManager:
    fpioa = Fpioa

    def __init__(self) -> None:
        self.pins: dict[int, int] = {}

    def register(self, pin: int, function: int, force: bool = False) -> None:
        if not 0 <= pin < 48:
            raise ValueError("pin num error")
        self.pins[pin] = function

    def unregister(self, pin: int) -> None:
        self.pins.pop(pin, None)

    def uart_routed(self, uart: int) -> bool:
        functions = set(self.pins.values())
        return all(f in functions for f in _UART_FUNCTIONS.get(uart, (-1,)))


def make_fpioa_manager(manager: FpioaManager) -> types.ModuleType:
    module = types.ModuleType("fpioa_manager")
    module.__dict__.update(fm=manager, FpioaManager=FpioaManager)
    return module
