/* pio_exit: the cost of one bare PIO exit round trip under KVM, from C.
 *
 * The peer of xenkvm's hypercall benchmark: a VM with 2 MiB of RAM whose only
 * vCPU starts directly in 64-bit long mode, ring 0 (set up with KVM_SET_SREGS,
 * no firmware, no guest boot code) and runs
 *
 *     loop: out %al, $0x9e      ; the hypercall port of xenkvm's stubs
 *           jmp loop
 *
 * Every KVM_RUN therefore returns with KVM_EXIT_IO after exactly two guest
 * instructions, and the time between two clock_gettime() calls around
 * KVM_RUN is one exit round trip: guest -> host kernel -> this process ->
 * guest.  Ring 0 because xenkvm's guests issue hypercalls from ring 0 (on a
 * PVM host ring 0 is emulated, so that is the fair comparison).
 *
 * Everything KVM-specific comes from <linux/kvm.h>; nothing is hand-copied.
 *
 *   pio_exit [-n N] [-w WARMUP] [-s]     -s: also ask for sync regs (REGS|SREGS)
 *                                         on every exit, as xenkvm's vCPU threads do
 * Output: one line of key=value pairs (ns), parsed by tools/bench/pio-exit.ts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE (2u << 20)
#define PML4_GPA 0x1000u
#define PDPT_GPA 0x2000u
#define PD_GPA 0x3000u
#define GDT_GPA 0x4000u
#define CODE_GPA 0x10000u
#define STACK_TOP 0x20000u
#define PIO_PORT 0x9e

/* x86 architectural bits (SDM vol. 3), not KVM ABI. */
#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_PS 0x80ull
#define CR0_PE 0x1ull
#define CR0_MP 0x2ull
#define CR0_ET 0x10ull
#define CR0_NE 0x20ull
#define CR0_WP 0x10000ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

static void die(const char *what)
{
    fprintf(stderr, "pio_exit: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int xioctl(int fd, unsigned long req, void *arg, const char *what)
{
    int r = ioctl(fd, req, arg);
    if (r < 0)
        die(what);
    return r;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array (same rule as tools/bench/stats.ts). */
static uint64_t pct(const uint64_t *s, size_t n, double p)
{
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return s[rank - 1];
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = 0;
    s->s = 1;
    s->g = 1;
    s->l = code ? 1 : 0;  /* 64-bit code segment */
    s->db = code ? 0 : 1; /* L=1 requires D=0 */
}

int main(int argc, char **argv)
{
    long n = 20000, warm = 1000;
    int sync = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = strtol(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "-w") && i + 1 < argc)
            warm = strtol(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "-s"))
            sync = 1;
        else {
            fprintf(stderr, "usage: pio_exit [-n N] [-w WARMUP] [-s]\n");
            return 2;
        }
    }
    if (n < 1 || n > 10000000 || warm < 0) {
        fprintf(stderr, "pio_exit: bad -n/-w\n");
        return 2;
    }

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("open /dev/kvm");
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        fprintf(stderr, "pio_exit: unexpected KVM API version\n");
        return 1;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    /* Same VM shape as xenkvm's (in-kernel irqchip), so the exit path matches. */
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
        die("KVM_CREATE_IRQCHIP");

    uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap guest memory");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .flags = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uint64_t)(uintptr_t)mem,
    };
    xioctl(vm, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");

    /* Page tables: PML4[0] -> PDPT[0] -> PD[0] = one 2 MiB page at 0 (identity). */
    uint64_t *pml4 = (uint64_t *)(mem + PML4_GPA), *pdpt = (uint64_t *)(mem + PDPT_GPA), *pd = (uint64_t *)(mem + PD_GPA);
    pml4[0] = PDPT_GPA | PTE_P | PTE_RW;
    pdpt[0] = PD_GPA | PTE_P | PTE_RW;
    pd[0] = 0 | PTE_P | PTE_RW | PTE_PS;
    /* A GDT matching the hidden segment state below (null, code64 0x08, data 0x10),
     * so nothing that re-reads descriptors sees garbage. */
    uint64_t *gdt = (uint64_t *)(mem + GDT_GPA);
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffull; /* P, DPL0, code exec/read accessed, L=1, G=1 */
    gdt[2] = 0x00cf93000000ffffull; /* P, DPL0, data read/write accessed, D/B=1, G=1 */
    static const uint8_t code[] = { 0xe6, PIO_PORT, /* out %al, $PIO_PORT */
                                    0xeb, 0xfc };   /* jmp . - 2 (back to the out) */
    memcpy(mem + CODE_GPA, code, sizeof(code));

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");

    /* KVM refuses EFER.LME unless the guest's CPUID has long mode: give it all
     * the host supports, as xenkvm does. */
    int nent = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid)
        die("calloc");
    cpuid->nent = nent;
    xioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid, "KVM_GET_SUPPORTED_CPUID");
    xioctl(vcpu, KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2");

    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run))
        die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");

    struct kvm_sregs sregs;
    xioctl(vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
    set_seg(&sregs.cs, 0x08, 0xb, 1);
    set_seg(&sregs.ds, 0x10, 0x3, 0);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.gdt.base = GDT_GPA;
    sregs.gdt.limit = 3 * 8 - 1;
    sregs.cr3 = PML4_GPA;
    sregs.cr4 = CR4_PAE;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
    xioctl(vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");

    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rip = CODE_GPA;
    regs.rsp = STACK_TOP;
    regs.rflags = 0x2; /* reserved bit 1; IF=0 so nothing interrupts the loop */
    xioctl(vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");

    if (sync) {
        if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS) <= 0) {
            fprintf(stderr, "pio_exit: KVM_CAP_SYNC_REGS not supported\n");
            return 1;
        }
        run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
    }

    uint64_t *samples = malloc((size_t)n * sizeof(*samples));
    if (!samples)
        die("malloc");
    for (long i = -warm; i < n; i++) {
        uint64_t t0 = now_ns();
        int r = ioctl(vcpu, KVM_RUN, 0);
        uint64_t t1 = now_ns();
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                i--;
                continue;
            }
            die("KVM_RUN");
        }
        if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT || run->io.port != PIO_PORT) {
            fprintf(stderr, "pio_exit: unexpected exit %u (port 0x%x)\n", run->exit_reason,
                    run->exit_reason == KVM_EXIT_IO ? run->io.port : 0);
            return 1;
        }
        if (i >= 0)
            samples[i] = t1 - t0;
    }

    /* Reported so the bench can convert the guest's TSC cycles to ns. */
    long tsc_khz = ioctl(vcpu, KVM_GET_TSC_KHZ, 0);

    uint64_t sum = 0;
    for (long i = 0; i < n; i++)
        sum += samples[i];
    qsort(samples, (size_t)n, sizeof(*samples), cmp_u64);
    printf("pio_exit: n=%ld sync_regs=%d min_ns=%lu median_ns=%lu p99_ns=%lu max_ns=%lu mean_ns=%lu tsc_khz=%ld\n", n, sync,
           (unsigned long)samples[0], (unsigned long)pct(samples, (size_t)n, 50), (unsigned long)pct(samples, (size_t)n, 99),
           (unsigned long)samples[n - 1], (unsigned long)(sum / (uint64_t)n), tsc_khz);
    return 0;
}
