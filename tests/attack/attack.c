/*
 * attack: the static helper the soundness tests copy into a container, as an attacker with a
 * compiler would. One binary, one subcommand per door; each prints one line saying what the
 * kernel answered ("ok", "errno=N", or what it read/received) and exits 0 when the operation
 * went through, 1 when it was refused, 2 on bad usage. Built with `gcc -static -no-pie` so the
 * 32-bit entry point (`int 0x80`) can take pointers to its static buffers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

static int refused(const char *what) {
    printf("%s errno=%d\n", what, errno);
    return 1;
}

static int done(const char *what) {
    printf("%s ok\n", what);
    return 0;
}

/* A path the 32-bit entry point can reach: static storage below 4 GiB. */
static char low_path[4096];

static int open_int80(const char *path, int flags) {
    strncpy(low_path, path, sizeof low_path - 1);
    long ret;
    /* i386 open(2) is syscall 5: eax = nr, ebx = path, ecx = flags, edx = mode. */
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(5L), "b"((long)(unsigned long)low_path), "c"((long)flags), "d"(0644L)
                     : "memory");
    if (ret < 0) {
        errno = (int)-ret;
        return -1;
    }
    return (int)ret;
}

struct thread_open { const char *path; int fd; int err; };

static void *open_in_thread(void *arg) {
    struct thread_open *t = arg;
    t->fd = open(t->path, O_WRONLY | O_APPEND);
    t->err = errno;
    return NULL;
}

static int write_and_close(int fd, const char *what) {
    if (write(fd, "EVIL\n", 5) != 5)
        return refused(what);
    close(fd);
    return done(what);
}

static int cmd_write(int argc, char **argv) {
    /* write MODE PATH: append "EVIL" to PATH through one of several doors. */
    if (argc < 4) return 2;
    const char *mode = argv[2], *path = argv[3];
    int fd = -1;
    if (!strcmp(mode, "open")) {
        fd = open(path, O_WRONLY | O_APPEND);
    } else if (!strcmp(mode, "thread")) {
        struct thread_open t = { path, -1, 0 };
        pthread_t th;
        pthread_create(&th, NULL, open_in_thread, &t);
        pthread_join(th, NULL);
        fd = t.fd;
        errno = t.err;
    } else if (!strcmp(mode, "openat2")) {
        struct open_how how = { .flags = O_WRONLY | O_APPEND };
        fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
    } else if (!strcmp(mode, "int80")) {
        fd = open_int80(path, O_WRONLY | O_APPEND);
    } else if (!strcmp(mode, "creat")) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    } else {
        return 2;
    }
    if (fd < 0)
        return refused(mode);
    return write_and_close(fd, mode);
}

static int cmd_fsop(int argc, char **argv) {
    /* fsop OP PATH [PATH2] */
    if (argc < 4) return 2;
    const char *op = argv[2], *a = argv[3], *b = argc > 4 ? argv[4] : NULL;
    int r;
    if (!strcmp(op, "truncate")) r = truncate(a, 0);
    else if (!strcmp(op, "chmod")) r = chmod(a, 0777);
    else if (!strcmp(op, "chown")) r = chown(a, 1234, 1234);
    else if (!strcmp(op, "unlink")) r = unlink(a);
    else if (!strcmp(op, "link") && b) r = link(a, b);
    else if (!strcmp(op, "rename") && b) r = rename(a, b);
    else if (!strcmp(op, "umount")) r = umount2(a, MNT_DETACH);
    else if (!strcmp(op, "mount-rw")) r = mount(NULL, a, NULL, MS_REMOUNT | MS_BIND, NULL);
    else return 2;
    if (r != 0)
        return refused(op);
    return done(op);
}

static int cmd_read(int argc, char **argv) {
    /* read PATH: print the first line, or errno. */
    if (argc < 3) return 2;
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0)
        return refused("read");
    char buf[256] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) return refused("read");
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    printf("read ok: %s\n", buf);
    return 0;
}

static int copy_into(int out, const char *src) {
    int in = open(src, O_RDONLY);
    if (in < 0) return -1;
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n) return -1;
    close(in);
    return 0;
}

static int cmd_exec(int argc, char **argv) {
    /* exec HOW PATH [ARG...]: run PATH by HOW and report how it ended. */
    if (argc < 4) return 2;
    const char *how = argv[2], *path = argv[3];
    char fdpath[64];
    pid_t pid = fork();
    if (pid == 0) {
        char **args = &argv[3];
        if (!strcmp(how, "path")) {
            execv(path, args);
        } else if (!strcmp(how, "deleted")) {
            /* open, unlink, run through /proc/self/fd/N */
            int fd = open(path, O_RDONLY);
            if (fd < 0) _exit(100 + errno);
            unlink(path);
            snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
            execv(fdpath, args);
        } else if (!strcmp(how, "memfd")) {
            /* copy the file into a memfd and run it from there */
            int fd = (int)syscall(SYS_memfd_create, "payload", 0);
            if (fd < 0 || copy_into(fd, path) < 0) _exit(100 + errno);
            snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
            execv(fdpath, args);
        } else if (!strcmp(how, "execveat")) {
            int fd = open(path, O_RDONLY);
            if (fd < 0) _exit(100 + errno);
            syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
        }
        _exit(100 + errno);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) {
        printf("exec %s signal=%d\n", how, WTERMSIG(st));
        return 1;
    }
    int code = WEXITSTATUS(st);
    if (code >= 100) {
        printf("exec %s errno=%d\n", how, code - 100);
        return 1;
    }
    printf("exec %s exit=%d\n", how, code);
    return 0;
}

static int cmd_map(int argc, char **argv) {
    /* map HOW PATH: map PATH executable (mmap PROT_EXEC, or mprotect/pkey_mprotect to PROT_EXEC). */
    if (argc < 4) return 2;
    int fd = open(argv[3], O_RDONLY);
    if (fd < 0) return refused("open");
    void *p;
    if (!strcmp(argv[2], "mmap")) {
        p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) return refused("mmap");
        return done("mmap");
    }
    if (!strcmp(argv[2], "memfd")) {
        /* map memfd SRC: SRC's bytes copied into a memfd, mapped executable. */
        int m = memfd_create("code", 0);
        if (m < 0) return refused("memfd");
        char buf[4096] = {0};
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 || write(m, buf, sizeof buf) != (ssize_t)sizeof buf) return refused("memfd-write");
        p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, m, 0);
        if (p == MAP_FAILED) return refused("mmap-memfd");
        return done("mmap-memfd");
    }
    /* map mprotect|pkey PATH: mapped readable, then made executable (pkey_mprotect with no
     * key is mprotect by another syscall); the first word of the page is read after, so the
     * line only prints when the process survived the change. */
    p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return refused("mmap-read");
    if (!strcmp(argv[2], "pkey")) {
        if (syscall(SYS_pkey_mprotect, p, 4096, PROT_READ | PROT_EXEC, -1) != 0)
            return refused("pkey_mprotect");
        printf("pkey_mprotect word=%x\n", *(volatile unsigned *)p);
        return done("pkey_mprotect");
    }
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) return refused("mprotect");
    printf("mprotect word=%x\n", *(volatile unsigned *)p);
    return done("mprotect");
}

static int cmd_ptrace(int argc, char **argv) {
    (void)argc; (void)argv;
    /* attach to a child we started, and a child that offers itself (PTRACE_TRACEME) */
    pid_t pid = fork();
    if (pid == 0) { pause(); _exit(0); }
    int r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
    int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (r != 0) { errno = e; return refused("ptrace-attach"); }
    return done("ptrace-attach");
}

static int cmd_traceme(int argc, char **argv) {
    (void)argc; (void)argv;
    pid_t pid = fork();
    if (pid == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) _exit(100 + errno);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WEXITSTATUS(st) >= 100) { errno = WEXITSTATUS(st) - 100; return refused("traceme"); }
    return done("traceme");
}

/* The target of `inject`: a child whose buffer the parent tries to overwrite. */
static char target_buf[64] = "ORIGINAL";

static int cmd_inject(int argc, char **argv) {
    /* inject HOW (vmwrite | poke | traceme | procmem | procmem-open | procmem-openat2): write
     * into a child's memory with process_vm_writev, PTRACE_ATTACH + PTRACE_POKEDATA, or
     * /proc/<child>/mem opened by openat, open(2) or openat2; or have the child offer itself
     * with PTRACE_TRACEME. The child prints "target=<its buffer>" once the parent is done or
     * dead (its pipe closes), so the effect is visible even when the parent is killed. */
    if (argc < 3) return 2;
    int go[2];
    if (pipe(go) != 0) return refused("pipe");
    int traceme = !strcmp(argv[2], "traceme");
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        if (traceme && ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
            printf("traceme errno=%d\n", errno);
            _exit(1);
        }
        char c;
        while (read(go[0], &c, 1) > 0) {}
        printf("target %s=%s\n", argv[2], target_buf);
        _exit(0);
    }
    close(go[0]);
    const char *what = argv[2];
    int r = 0;
    if (!strcmp(what, "vmwrite")) {
        static char evil[64] = "OVERWRITTEN";
        struct iovec local = { evil, sizeof evil }, remote = { target_buf, sizeof target_buf };
        r = process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)sizeof evil ? 0 : -1;
    } else if (!strcmp(what, "poke")) {
        r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
        if (r == 0) {
            waitpid(pid, NULL, 0);
            long word;
            memcpy(&word, "POKED!!!", sizeof word);
            r = ptrace(PTRACE_POKEDATA, pid, target_buf, (void *)word);
            ptrace(PTRACE_DETACH, pid, NULL, NULL);
        }
    } else if (!strncmp(what, "procmem", 7)) {
        /* procmem (openat), procmem-open (open(2)), procmem-openat2: /proc/<child>/mem. */
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/mem", pid);
        int fd;
        if (!strcmp(what, "procmem-open")) {
            fd = (int)syscall(SYS_open, path, O_RDWR);
        } else if (!strcmp(what, "procmem-openat2")) {
            struct open_how how = { .flags = O_RDWR };
            fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
        } else {
            fd = open(path, O_RDWR);
        }
        r = fd < 0 ? -1 : 0;
        if (fd >= 0) {
            static const char evil[] = "MEMWRITE";
            r = pwrite(fd, evil, sizeof evil, (off_t)(unsigned long)target_buf) == (ssize_t)sizeof evil ? 0 : -1;
        }
    } else if (!traceme) {
        return 2;
    }
    int e = errno;
    close(go[1]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (traceme && WIFSIGNALED(st)) {
        printf("traceme child killed by %d\n", WTERMSIG(st));
        return 1;
    }
    if (r != 0) { errno = e; return refused(what); }
    return done(what);
}

static int cmd_procmem(int argc, char **argv) {
    (void)argc; (void)argv;
    int fd = open("/proc/self/mem", O_RDWR);
    if (fd < 0) return refused("procmem");
    close(fd);
    return done("procmem");
}

static int cmd_packet(int argc, char **argv) {
    (void)argc; (void)argv;
    int s = socket(AF_PACKET, SOCK_RAW, htons(3 /* ETH_P_ALL */));
    if (s < 0) return refused("packet");
    close(s);
    return done("packet");
}

static int cmd_ping(int argc, char **argv) {
    /* ping ADDR: an ICMP datagram socket, one echo request sent with sendto (unconnected). */
    if (argc < 3) return 2;
    int s = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (s < 0) return refused("ping-socket");
    struct sockaddr_in to = { .sin_family = AF_INET };
    inet_pton(AF_INET, argv[2], &to.sin_addr);
    struct icmphdr h = { .type = ICMP_ECHO };
    if (sendto(s, &h, sizeof h, 0, (struct sockaddr *)&to, sizeof to) < 0) return refused("ping-send");
    return done("ping-send");
}

static int cmd_connect(int argc, char **argv) {
    /* connect ADDR PORT: TCP (v4, or v6 when ADDR has a colon), send one line. */
    if (argc < 4) return 2;
    int v6 = strchr(argv[2], ':') != NULL;
    int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    int r;
    if (v6) {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[3])) };
        inet_pton(AF_INET6, argv[2], &a.sin6_addr);
        r = connect(s, (struct sockaddr *)&a, sizeof a);
    } else {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
        inet_pton(AF_INET, argv[2], &a.sin_addr);
        r = connect(s, (struct sockaddr *)&a, sizeof a);
    }
    if (r != 0) return refused("connect");
    if (write(s, "ATTACK\n", 7) != 7) return refused("send");
    close(s);
    return done("connect");
}

static int cmd_listen(int argc, char **argv) {
    /* listen HOW SECONDS: a TCP listener on a port the kernel picks ("bind0": bind to port 0;
     * "autobind": listen unbound); prints "port=N" at once, then waits for one connection. */
    if (argc < 4) return 2;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (!strcmp(argv[2], "bind0")) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return refused("bind");
    }
    if (listen(s, 8) != 0) return refused("listen");
    struct sockaddr_in got; socklen_t len = sizeof got;
    getsockname(s, (struct sockaddr *)&got, &len);
    printf("port=%d\n", ntohs(got.sin_port));
    fflush(stdout);
    struct pollfd p = { s, POLLIN, 0 };
    if (poll(&p, 1, atoi(argv[3]) * 1000) <= 0) { printf("listen nothing\n"); return 1; }
    int c = accept(s, NULL, NULL);
    if (c < 0) return refused("accept");
    printf("listen accepted\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return 2;
    const char *c = argv[1];
    if (!strcmp(c, "write")) return cmd_write(argc, argv);
    if (!strcmp(c, "fsop")) return cmd_fsop(argc, argv);
    if (!strcmp(c, "read")) return cmd_read(argc, argv);
    if (!strcmp(c, "exec")) return cmd_exec(argc, argv);
    if (!strcmp(c, "map")) return cmd_map(argc, argv);
    if (!strcmp(c, "ptrace")) return cmd_ptrace(argc, argv);
    if (!strcmp(c, "traceme")) return cmd_traceme(argc, argv);
    if (!strcmp(c, "procmem")) return cmd_procmem(argc, argv);
    if (!strcmp(c, "inject")) return cmd_inject(argc, argv);
    if (!strcmp(c, "packet")) return cmd_packet(argc, argv);
    if (!strcmp(c, "ping")) return cmd_ping(argc, argv);
    if (!strcmp(c, "connect")) return cmd_connect(argc, argv);
    if (!strcmp(c, "listen")) return cmd_listen(argc, argv);
    fprintf(stderr, "attack: unknown command %s\n", c);
    return 2;
}
