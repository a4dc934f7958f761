/* Reset entry of the QEMU `virt` build (bare metal, M-mode, hart 0): FPU on, .data copied, .bss zeroed,
 * the stack painted (so its high-water mark can be read later), then the K210 glue's main(). The
 * symbols come from picolibc's picolibc.ld, sized by the Makefile's --defsym flags. */
    .section .text.init.enter, "ax"  /* first in the image: QEMU -bios none starts at 0x80000000 */
    .globl _start
_start:
    csrr    t0, mhartid
1:  bnez    t0, 1b                  /* only hart 0 runs the firmware */
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, __stack
    li      t0, 0x2000              /* mstatus.FS = initial: the glue and the runner use floats */
    csrs    mstatus, t0
    csrw    fcsr, zero
    la      t0, qemu_trap
    csrw    mtvec, t0
    la      t0, __data_source       /* .data: load address (flash region) -> run address (RAM) */
    la      t1, __data_start
    la      t2, __data_end
2:  bgeu    t1, t2, 3f
    lb      t3, 0(t0)
    sb      t3, 0(t1)
    addi    t0, t0, 1
    addi    t1, t1, 1
    j       2b
3:  la      t1, __bss_start
    la      t2, __bss_end
4:  bgeu    t1, t2, 5f
    sd      zero, 0(t1)
    addi    t1, t1, 8
    j       4b
5:  la      t1, __heap_end          /* the stack: [__heap_end, __stack), painted 0xA5 up to here */
    li      t3, 0xA5A5A5A5A5A5A5A5
6:  bgeu    t1, sp, 7f
    sd      t3, 0(t1)
    addi    t1, t1, 8
    j       6b
7:  call    main
8:  j       8b
