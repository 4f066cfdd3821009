/* Omega reset code: 16-bit reset vector -> 32-bit protected mode -> SEV check -> early
 * identity paging (C-bit under SNP) -> 64-bit long mode -> omega_loader_main (Rust).
 * AT&T syntax; the brace-enclosed operands are constants from omega_boot_info::phys. */

.section .reset_vector, "ax"
.code16
.global omega_reset_vector
omega_reset_vector:
    cli
    jmp omega_boot16
    .balign 16, 0xf4

.section .boot16, "ax"
.code16
.global omega_boot16
omega_boot16:
    cld
    /* Real mode with CS base 0xffff0000: reach the descriptor through CS. */
    lgdtl %cs:(omega_gdt_desc - 0xffff0000)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $omega_boot32

/* Application processors (the SEV-ES reset block points here) park until the monitor
 * brings them up. */
.global omega_ap_reset
omega_ap_reset:
    cli
    hlt
    jmp omega_ap_reset

.code32
omega_boot32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl ${stack_top}, %esp

    /* A 32-bit IDT for the SEV check: #GP and #VC are handled, anything else stops the
     * boot with a message. Gates are built at run time (ELF cannot split addresses). */
    movl ${idt32}, %edi
    xorl %ecx, %ecx
1:
    movl $omega_fault32, %eax
    cmpl $13, %ecx
    jne 2f
    movl $omega_gp32, %eax
2:
    cmpl $29, %ecx
    jne 3f
    movl $omega_vc32, %eax
3:
    movl %eax, %edx
    andl $0xffff, %eax
    orl $0x00080000, %eax
    movl %eax, (%edi)
    andl $0xffff0000, %edx
    orl $0x8e00, %edx
    movl %edx, 4(%edi)
    addl $8, %edi
    incl %ecx
    cmpl $32, %ecx
    jne 1b
    lidtl omega_idt32_desc

    /* SEV detection, CPUID first (the MSR faults on Intel and TCG). Under SEV-ES/SNP the
     * CPUIDs raise #VC, which omega_vc32 answers from the PSP-checked CPUID page. %ebp
     * gets the high dword of the C-bit mask for every page-table entry (0 without SEV);
     * %esi keeps SEV_STATUS[31:0] for the 64-bit loader. */
    xorl %esi, %esi
    xorl %ebp, %ebp
    movl $0x80000000, %eax
    cpuid
    cmpl $0x8000001f, %eax
    jb 5f
    movl $0x8000001f, %eax
    xorl %ecx, %ecx
    cpuid
    testl $2, %eax
    jz 5f
    movl %ebx, %edi
    movl $0xc0010131, %ecx
.global omega_sev_status_rdmsr
omega_sev_status_rdmsr:
    rdmsr
    movl %eax, %esi
5:
    testl $1, %esi
    jz omega_page_tables
    /* SECURITY: only SEV-SNP protects memory integrity and gives a trustworthy CPUID
     * page; plain SEV and SEV-ES are refused rather than run half-protected. */
    testl $4, %esi
    jnz omega_snp
    testl $2, %esi
    jnz omega_snp_unsupported
    movl $omega_msg_sev, %esi
    jmp omega_die32

omega_snp:
    /* SECURITY: the C-bit position is pinned (51 on every SNP part so far); a CPUID page
     * that says otherwise ends the launch instead of letting the host pick the bit. */
    andl $0x3f, %edi
    cmpl ${c_bit}, %edi
    jne omega_cbit_terminate
    movl $(1 << ({c_bit} - 32)), %ebp

omega_page_tables:
    /* Identity-map 0..4 GiB with 2 MiB pages, and alias 3..4 GiB at the top of the
     * address space, where the 64-bit loader is linked, and 0..1 GiB below it. Under SNP every entry carries
     * the C-bit (high dword in %ebp): page tables, code and data are private. */
    movl ${pml4}, %edi
    xorl %eax, %eax
    movl $(7 * 1024), %ecx
    rep stosl
    movl ${pdpt}+3, {pml4}
    movl %ebp, {pml4}+4
    movl ${pdpt_high}+3, {pml4}+4088
    movl %ebp, {pml4}+4092
    movl ${pd}+3, {pdpt}
    movl %ebp, {pdpt}+4
    movl ${pd}+0x1003, {pdpt}+8
    movl %ebp, {pdpt}+12
    movl ${pd}+0x2003, {pdpt}+16
    movl %ebp, {pdpt}+20
    movl ${pd}+0x3003, {pdpt}+24
    movl %ebp, {pdpt}+28
    movl ${pd}+0x3003, {pdpt_high}+4088
    movl %ebp, {pdpt_high}+4092
    movl ${pd}+3, {pdpt_high}+4080      /* 0..1 GiB again at -2 GiB: the loader's .bss */
    movl %ebp, {pdpt_high}+4084
    movl ${pd}, %edi
    movl $0x83, %eax
    movl $2048, %ecx
6:
    movl %eax, (%edi)
    movl %ebp, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 6b

    movl %cr4, %eax
    orl $0x20, %eax          /* PAE */
    movl %eax, %cr4
    movl ${pml4}, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx   /* EFER */
    rdmsr
    orl $0x900, %eax         /* LME | NXE */
    wrmsr
    movl %cr0, %eax
    orl $0x80010000, %eax    /* PG | WP */
    movl %eax, %cr0
    ljmpl $0x18, $omega_boot64

/* #GP: expected only from the SEV_STATUS read on a CPU that claims SEV without the MSR;
 * resume as "no SEV". */
omega_gp32:
    cmpl $omega_sev_status_rdmsr, 4(%esp)
    jne omega_fault32
    addl $4, %esp
    addl $2, (%esp)
    xorl %eax, %eax
    xorl %edx, %edx
    iretl

/* #VC: answer CPUID from the SNP CPUID page (SEV-SNP ABI spec: u32 count at +0, entries
 * of 0x30 bytes from +0x10: EAX_IN +0x00, ECX_IN +0x04, EAX..EDX +0x18..+0x24). The reset
 * code asks only sub-leaf-less leaves, so EAX_IN alone selects the entry. SECURITY: the
 * host's own CPUID answers (MSR protocol) are never used: under SNP the PSP checked this
 * page at launch, and a launch without it (SEV-ES) is refused here. Any other exit, or a
 * leaf missing from the page, ends the guest. */
omega_vc32:
    cmpl $0x72, (%esp)
    jne omega_sev_terminate
    movl {cpuid_page}, %ecx
    testl %ecx, %ecx
    jz omega_sev_terminate
    cmpl $64, %ecx
    ja omega_sev_terminate
    movl ${cpuid_page}+0x10, %edx
11:
    cmpl (%edx), %eax
    je 12f
    addl $0x30, %edx
    loop 11b
    jmp omega_sev_terminate
12:
    movl 0x1c(%edx), %ebx
    movl 0x20(%edx), %ecx
    movl 0x18(%edx), %eax
    movl 0x24(%edx), %edx
    addl $4, %esp
    addl $2, (%esp)
    iretl

/* GHCB MSR protocol termination requests (codes in omega_boot_info::snp::terminate): the
 * hypervisor reports the code and stops the guest. */
/* The C-bit position check failed. */
omega_cbit_terminate:
    movl ${term_c_bit}, %eax
    jmp 14f
/* SEV-ES without SNP: the GHCB spec's "SEV-SNP features not supported" (set 0, code 2). */
omega_snp_unsupported:
    movl ${term_snp_unsupported}, %eax
    jmp 14f
/* No usable CPUID page, a leaf missing from it, or a #VC other than CPUID. */
omega_sev_terminate:
    movl ${term_cpuid_page}, %eax
14:
    movl $0xc0010130, %ecx
    xorl %edx, %edx
    wrmsr
    .byte 0xf3, 0x0f, 0x01, 0xd9
7:
    hlt
    jmp 7b

omega_fault32:
    movl $omega_msg_fault32, %esi
/* Prints the NUL-terminated string at %esi on COM1 and exits QEMU with failure. */
omega_die32:
    movw $0x3f8, %dx
8:
    lodsb
    testb %al, %al
    jz 9f
    outb %al, %dx
    jmp 8b
9:
    movw $0xf4, %dx
    movb $0x11, %al
    outb %al, %dx
10:
    hlt
    jmp 10b

.code64
omega_boot64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq ${stack_top}, %rsp
    movl %esi, %edi          /* SEV_STATUS[31:0] */
    movabsq $omega_loader_main, %rax
    callq *%rax
    ud2

.balign 8
/* Accessed bits preset: the CPU would otherwise try to set them in ROM. */
omega_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff    /* 0x08: 32-bit code */
    .quad 0x00cf93000000ffff    /* 0x10: data */
    .quad 0x00af9b000000ffff    /* 0x18: 64-bit code */
omega_gdt_end:
omega_gdt_desc:
    .word omega_gdt_end - omega_gdt - 1
    .long omega_gdt
omega_idt32_desc:
    .word 32 * 8 - 1
    .long {idt32}
omega_msg_fault32:
    .asciz "omega-loader: FATAL: CPU exception in the 32-bit reset code\r\n"
omega_msg_sev:
    .asciz "omega-loader: FATAL: plain SEV guest detected; this image runs only as SEV-SNP (or without SEV)\r\n"
