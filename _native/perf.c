/* kvmpmu shim: perf_event_open, ioctls, reads, signal routing.
 * Every function returns the syscall result or -errno; none prints or aborts. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>

struct kvmpmu_attr {
    uint32_t type;
    uint64_t config;
    uint64_t config1;
    uint64_t config2;
    uint64_t sample_period;
    uint64_t sample_type;
    uint64_t read_format;
    uint32_t wakeup_events;
    uint8_t disabled;
    uint8_t inherit;
    uint8_t pinned;
    uint8_t exclude_user;
    uint8_t exclude_kernel;
    uint8_t exclude_hv;
    uint8_t exclude_idle;
    uint8_t exclude_host;
    uint8_t exclude_guest;
    uint8_t precise_ip;
};

#define NEG_ERRNO(r) ((r) < 0 ? -errno : (r))

static int kvmpmu_perf_attr_size(void) { return (int)sizeof(struct perf_event_attr); }

static int kvmpmu_perf_event_open(const struct kvmpmu_attr *a, int pid, int cpu,
                                  int group_fd, unsigned long flags)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = a->type;
    attr.config = a->config;
    attr.config1 = a->config1;
    attr.config2 = a->config2;
    attr.sample_period = a->sample_period;
    attr.sample_type = a->sample_type;
    attr.read_format = a->read_format;
    attr.wakeup_events = a->wakeup_events;
    attr.disabled = a->disabled != 0;
    attr.inherit = a->inherit != 0;
    attr.pinned = a->pinned != 0;
    attr.exclude_user = a->exclude_user != 0;
    attr.exclude_kernel = a->exclude_kernel != 0;
    attr.exclude_hv = a->exclude_hv != 0;
    attr.exclude_idle = a->exclude_idle != 0;
    attr.exclude_host = a->exclude_host != 0;
    attr.exclude_guest = a->exclude_guest != 0;
    attr.precise_ip = a->precise_ip & 3;
    long r = syscall(SYS_perf_event_open, &attr, pid, cpu, group_fd,
                     flags | PERF_FLAG_FD_CLOEXEC);
    return (int)NEG_ERRNO(r);
}

static int kvmpmu_ioctl_noarg(int fd, unsigned long request, unsigned long arg)
{
    int r = ioctl(fd, request, arg);
    return NEG_ERRNO(r);
}

static int kvmpmu_ioctl_u64(int fd, unsigned long request, uint64_t value)
{
    int r = ioctl(fd, request, &value);
    return NEG_ERRNO(r);
}

static int kvmpmu_ioctl_get_u64(int fd, unsigned long request, uint64_t *out)
{
    int r = ioctl(fd, request, out);
    return NEG_ERRNO(r);
}

static long kvmpmu_read(int fd, void *buf, size_t len)
{
    long r;
    do { r = read(fd, buf, len); } while (r < 0 && errno == EINTR);
    return NEG_ERRNO(r);
}

/* value, time_enabled, time_running: the read_format every PerfEvent uses. */
static int kvmpmu_read_u64x3(int fd, uint64_t *out)
{
    long r = kvmpmu_read(fd, out, 3 * sizeof(uint64_t));
    if (r < 0) return (int)r;
    return r == 3 * sizeof(uint64_t) ? 0 : -EIO;
}

static int kvmpmu_close(int fd) { int r = close(fd); return NEG_ERRNO(r); }
static int kvmpmu_gettid(void) { return (int)syscall(SYS_gettid); }
static int kvmpmu_tgkill(int tgid, int tid, int sig)
{
    long r = syscall(SYS_tgkill, tgid, tid, sig);
    return (int)NEG_ERRNO(r);
}
static int kvmpmu_sigrtmin(void) { return SIGRTMIN; }

/* Route the fd's overflow notifications to one thread as signal signo. */
static int kvmpmu_signal_to_thread(int fd, int tid, int signo)
{
    struct f_owner_ex owner = { .type = F_OWNER_TID, .pid = tid };
    if (fcntl(fd, F_SETOWN_EX, &owner) < 0) return -errno;
    if (fcntl(fd, F_SETSIG, signo) < 0) return -errno;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    if (fcntl(fd, F_SETFL, fl | O_ASYNC) < 0) return -errno;
    return 0;
}

/* Per-fd overflow counters written by the signal handler.  Only the handler
 * increments and only take() resets, both atomically, so nothing is lost
 * between a signal and the code that consumes it. */
#define KVMPMU_MAX_FD 4096
static volatile uint32_t overflow_count[KVMPMU_MAX_FD];
static volatile uint64_t overflow_gen;
static volatile uint64_t kick_count;

static void kvmpmu_kick_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    __atomic_add_fetch(&kick_count, 1, __ATOMIC_RELAXED);
    if (si && si->si_code > 0 && si->si_fd >= 0 && si->si_fd < KVMPMU_MAX_FD &&
        (si->si_code == POLL_IN || si->si_code == POLL_HUP || si->si_code == POLL_OUT ||
         si->si_code == POLL_MSG || si->si_code == POLL_ERR || si->si_code == POLL_PRI)) {
        __atomic_add_fetch(&overflow_count[si->si_fd], 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&overflow_gen, 1, __ATOMIC_SEQ_CST);
    }
}

static int kvmpmu_install_kick_handler(int signo)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = kvmpmu_kick_handler;
    sa.sa_flags = SA_SIGINFO;        /* deliberately no SA_RESTART: KVM_RUN must return EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, NULL) < 0) return -errno;
    return 0;
}

static uint64_t kvmpmu_overflow_generation(void)
{ return __atomic_load_n(&overflow_gen, __ATOMIC_SEQ_CST); }

static uint32_t kvmpmu_overflow_take(int fd)
{
    if (fd < 0 || fd >= KVMPMU_MAX_FD) return 0;
    return __atomic_exchange_n(&overflow_count[fd], 0, __ATOMIC_SEQ_CST);
}

static uint32_t kvmpmu_overflow_peek(int fd)
{
    if (fd < 0 || fd >= KVMPMU_MAX_FD) return 0;
    return __atomic_load_n(&overflow_count[fd], __ATOMIC_SEQ_CST);
}

static void kvmpmu_overflow_forget(int fd)
{
    if (fd >= 0 && fd < KVMPMU_MAX_FD)
        __atomic_store_n(&overflow_count[fd], 0, __ATOMIC_SEQ_CST);
}

static uint64_t kvmpmu_kicks(void) { return __atomic_load_n(&kick_count, __ATOMIC_RELAXED); }
static int kvmpmu_max_tracked_fd(void) { return KVMPMU_MAX_FD; }
static uint64_t kvmpmu_rdtsc(void) { return __rdtsc(); }

/* Block or unblock one signal for the calling thread. */
static int kvmpmu_block_signal(int signo, int block)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    int r = pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
    return r ? -r : 0;
}
