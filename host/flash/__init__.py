"""Writing firmware and kmodels into a K210's SPI flash with kflash.

`plan` checks what goes where before anything touches a board, `kfpkg` packs it the way kflash
wants, `ports` finds the board's USB serial port, `kflash_driver` runs kflash with a progress
callback and a watchdog, and `isp_emulator` is a board-less K210 that answers kflash (for tests).
"""
