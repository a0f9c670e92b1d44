/*
 * Lazy restore of guest RAM with userfaultfd: the guest starts before its
 * memory is filled.  Guest RAM (anonymous, never touched) is registered for
 * missing-page faults; a thread of this library serves each fault from the
 * snapshot file's pages (mapped read-only by the caller), and once told to
 * (xk_lazy_prefetch: when the guest runs, so that it does not compete with
 * the restore for the CPU) copies every stored page in guest order between
 * faults.  Once all are in, it unregisters the range, so later faults on
 * pages the file does not store (zero) are the kernel's own, and the thread
 * ends.
 *
 *   uintptr_t xk_lazy_start(ram, size, src, index)  -> handle, 0 on error (errno)
 *   void      xk_lazy_prefetch(handle)              -> copy the rest in, behind the faults
 *   int       xk_lazy_wait(handle)                  -> 0 once every page is in, -ECANCELED if cancelled
 *   void      xk_lazy_cancel(handle)                -> ends the thread (guest RAM is going away) and joins it
 *   void      xk_lazy_free(handle)                  -> frees the handle; only after wait returned
 *
 * index[p] is the file page (offset / 4096 in the mapping at src) that holds
 * guest page p, or UINT32_MAX for a zero page; it is copied at start.
 * Faults come from every thread touching guest RAM: vCPUs inside KVM_RUN
 * (KVM resolves guest page faults through the same mm), the emulator, and
 * the kernel on their behalf.
 *
 * A fault that cannot be served would leave its thread blocked for good, so
 * a failure to copy (the file truncated under the mapping, no memory) ends
 * the process with a message instead of letting the guest hang or read
 * wrong data.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define PAGE 4096ull
#define NONE UINT32_MAX
/* Pages per prefetch copy: 2 MiB, short enough that a fault waits little behind it. */
#define RUN_MAX 512

struct lazy {
  int uffd, stopfd, gofd;
  uint64_t ram, pages;
  const uint8_t *src;
  uint32_t *index;
  uint64_t next; /* prefetch resumes here */
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done;   /* 1: all in and unregistered, or stopped */
  int joined;
  int status; /* 0 or -errno */
};

static void fatal(const char *what, int err) {
  char msg[200];
  int n = snprintf(msg, sizeof msg, "xenkvm: cannot load guest memory from the snapshot file: %s (%s); the guest cannot run on\n", what, strerror(err));
  if (write(2, msg, (size_t)n) < 0) { /* nothing more to do */ }
  _exit(70);
}

/* Copies `n` pages from guest page p on (consecutive in the file too); pages already there are skipped. */
static void copy_pages(struct lazy *l, uint64_t p, uint64_t n) {
  while (n > 0) {
    struct uffdio_copy c = {
      .dst = l->ram + p * PAGE, .src = (uint64_t)(uintptr_t)(l->src + (uint64_t)l->index[p] * PAGE), .len = n * PAGE, .mode = 0,
    };
    if (ioctl(l->uffd, UFFDIO_COPY, &c) == 0) return;
    int err = errno;
    uint64_t done = c.copy > 0 ? (uint64_t)c.copy / PAGE : 0;
    p += done;
    n -= done;
    if (err == EAGAIN) continue; /* the mm changed meanwhile: retry the rest */
    if (err == EEXIST) {         /* page p is in already (a fault beat us): wake anyone on it, go past it */
      struct uffdio_range r = {.start = l->ram + p * PAGE, .len = PAGE};
      ioctl(l->uffd, UFFDIO_WAKE, &r);
      p++;
      n--;
      continue;
    }
    /* EFAULT: the file's pages are gone from under the mapping (truncated, or replaced in place). */
    fatal(err == EFAULT ? "the file was truncated or rewritten while guest memory was loaded from it" : "UFFDIO_COPY", err);
  }
}

static void serve_fault(struct lazy *l, uint64_t addr) {
  uint64_t p = (addr - l->ram) / PAGE;
  if (p >= l->pages) return;
  if (l->index[p] != NONE) {
    copy_pages(l, p, 1);
    return;
  }
  struct uffdio_zeropage z = {.range = {.start = l->ram + p * PAGE, .len = PAGE}, .mode = 0};
  if (ioctl(l->uffd, UFFDIO_ZEROPAGE, &z) == 0) return;
  if (errno != EEXIST && errno != EAGAIN) fatal("UFFDIO_ZEROPAGE", errno);
  /* Already there, or the mm changed: the faulting thread retries (and faults again if need be). */
  struct uffdio_range r = {.start = l->ram + p * PAGE, .len = PAGE};
  ioctl(l->uffd, UFFDIO_WAKE, &r);
}

/* The next run of stored pages, consecutive in guest and file, from l->next on; 0 when none is left. */
static uint64_t next_run(struct lazy *l, uint64_t *first) {
  uint64_t p = l->next;
  while (p < l->pages && l->index[p] == NONE) p++;
  uint64_t n = 0;
  while (p + n < l->pages && n < RUN_MAX && l->index[p + n] != NONE && l->index[p + n] == l->index[p] + n) n++;
  *first = p;
  l->next = p + n;
  return n;
}

static void finish(struct lazy *l, int status) {
  pthread_mutex_lock(&l->lock);
  l->done = 1;
  l->status = status;
  pthread_cond_broadcast(&l->cond);
  pthread_mutex_unlock(&l->lock);
}

static void *run(void *arg) {
  struct lazy *l = arg;
  struct uffd_msg msgs[32];
  int prefetching = 0;
  while (l->next < l->pages) {
    struct pollfd fds[3] = {{.fd = l->uffd, .events = POLLIN}, {.fd = l->stopfd, .events = POLLIN}, {.fd = l->gofd, .events = POLLIN}};
    int r = poll(fds, 3, prefetching ? 0 : -1);
    if (r < 0 && errno != EINTR) fatal("poll", errno);
    if (r > 0 && (fds[2].revents & POLLIN)) {
      uint64_t v;
      if (read(l->gofd, &v, sizeof v) < 0) { /* counted already: nothing to drain */ }
      prefetching = 1;
    }
    if (r > 0 && (fds[1].revents & POLLIN)) {
      struct uffdio_range all = {.start = l->ram, .len = l->pages * PAGE};
      ioctl(l->uffd, UFFDIO_UNREGISTER, &all);
      finish(l, -ECANCELED);
      return NULL;
    }
    if (r > 0 && (fds[0].revents & POLLIN)) {
      ssize_t got = read(l->uffd, msgs, sizeof msgs);
      if (got < 0 && errno != EAGAIN && errno != EINTR) fatal("read userfaultfd", errno);
      for (ssize_t i = 0; got > 0 && i < got / (ssize_t)sizeof msgs[0]; i++) {
        if (msgs[i].event == UFFD_EVENT_PAGEFAULT) serve_fault(l, msgs[i].arg.pagefault.address & ~(PAGE - 1));
      }
      continue; /* faults first: they are what a vCPU is waiting for */
    }
    if (!prefetching) continue;
    uint64_t first, n = next_run(l, &first);
    if (n > 0) copy_pages(l, first, n);
  }
  /* Every stored page is in: unregistering wakes any fault still queued, and the kernel zero-fills from here. */
  struct uffdio_range all = {.start = l->ram, .len = l->pages * PAGE};
  if (ioctl(l->uffd, UFFDIO_UNREGISTER, &all) != 0) fatal("UFFDIO_UNREGISTER", errno);
  finish(l, 0);
  return NULL;
}

EXPORT uintptr_t xk_lazy_start(uintptr_t ram, uint64_t size, uintptr_t src, uintptr_t index) {
  if (ram % PAGE != 0 || size % PAGE != 0 || size == 0 || src % PAGE != 0) {
    errno = EINVAL;
    return 0;
  }
  struct lazy *l = calloc(1, sizeof *l);
  if (!l) return 0;
  l->ram = ram;
  l->pages = size / PAGE;
  l->src = (const uint8_t *)src;
  l->uffd = l->stopfd = l->gofd = -1;
  l->index = malloc(l->pages * sizeof(uint32_t));
  if (!l->index) goto fail;
  memcpy(l->index, (const void *)index, l->pages * sizeof(uint32_t));
  l->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (l->uffd < 0) goto fail;
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  if (ioctl(l->uffd, UFFDIO_API, &api) != 0) goto fail;
  struct uffdio_register reg = {.range = {.start = ram, .len = size}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) != 0) goto fail;
  l->stopfd = eventfd(0, EFD_CLOEXEC);
  l->gofd = eventfd(0, EFD_CLOEXEC);
  if (l->stopfd < 0 || l->gofd < 0) goto fail_registered;
  pthread_mutex_init(&l->lock, NULL);
  pthread_cond_init(&l->cond, NULL);
  int err = pthread_create(&l->thread, NULL, run, l);
  if (err != 0) {
    errno = err;
    goto fail_registered;
  }
  return (uintptr_t)l;
fail_registered: {
  int e = errno;
  ioctl(l->uffd, UFFDIO_UNREGISTER, &reg.range);
  errno = e;
}
fail: {
  int e = errno;
  if (l->uffd >= 0) close(l->uffd);
  if (l->stopfd >= 0) close(l->stopfd);
  if (l->gofd >= 0) close(l->gofd);
  free(l->index);
  free(l);
  errno = e;
  return 0;
}
}

EXPORT void xk_lazy_prefetch(uintptr_t h) {
  uint64_t one = 1;
  if (write(((struct lazy *)h)->gofd, &one, sizeof one) < 0) { /* cannot fail on an eventfd short of overflow */ }
}

EXPORT int xk_lazy_wait(uintptr_t h) {
  struct lazy *l = (struct lazy *)h;
  pthread_mutex_lock(&l->lock);
  while (!l->done) pthread_cond_wait(&l->cond, &l->lock);
  int s = l->status;
  pthread_mutex_unlock(&l->lock);
  return s;
}

/*
 * Ends the thread, unregistering guest RAM if it is not all in, and waits
 * for it: once this returns nothing writes guest RAM, which may be unmapped.
 * Takes at most one copy of RUN_MAX pages.
 */
EXPORT void xk_lazy_cancel(uintptr_t h) {
  struct lazy *l = (struct lazy *)h;
  uint64_t one = 1;
  if (write(l->stopfd, &one, sizeof one) < 0) { /* cannot fail on an eventfd short of overflow */ }
  if (!l->joined) pthread_join(l->thread, NULL);
  l->joined = 1;
}

/* Frees the handle; the thread has ended and the caller's xk_lazy_wait has returned. */
EXPORT void xk_lazy_free(uintptr_t h) {
  struct lazy *l = (struct lazy *)h;
  if (!l->joined) pthread_join(l->thread, NULL);
  close(l->uffd);
  close(l->stopfd);
  close(l->gofd);
  pthread_mutex_destroy(&l->lock);
  pthread_cond_destroy(&l->cond);
  free(l->index);
  free(l);
}

/* 1 when this kernel lets the process use userfaultfd for missing pages, else 0 (errno says why). */
EXPORT int xk_lazy_available(void) {
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return 0;
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  int ok = ioctl(fd, UFFDIO_API, &api) == 0 && (api.ioctls & (1ull << _UFFDIO_REGISTER));
  close(fd);
  return ok;
}
