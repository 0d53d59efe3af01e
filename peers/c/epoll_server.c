#define _GNU_SOURCE
/* A minimal single-threaded, level-triggered epoll uppercase-echo server: the
 * near-limit reference of the peer benchmark. Usage: epoll_server PORT (TCP on
 * 127.0.0.1) or epoll_server PATH (a Unix stream socket: any argument with a
 * '/'; the file must not exist yet).
 * Per connection: read up to 64 KiB, upper-case, write; what the kernel does
 * not take is kept and the socket waits for EPOLLOUT before reading again. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    size_t off, len; /* pending bytes buf[off..len] */
    unsigned char buf[BUF];
};

static void upper(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] -= (unsigned char)((p[i] - 'a') < 26u) << 5;
}

static void drop_conn(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: epoll_server PORT|PATH\n"); return 2; }
    int unix_socket = strchr(argv[1], '/') != NULL, one = 1;
    int ls = socket(unix_socket ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    struct sockaddr *addr = (struct sockaddr *)&a;
    socklen_t len = sizeof a;
    if (unix_socket) {
        if (strlen(argv[1]) >= sizeof u.sun_path) { fprintf(stderr, "path too long\n"); return 2; }
        strcpy(u.sun_path, argv[1]);
        addr = (struct sockaddr *)&u;
        len = sizeof u;
    } else {
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(ls, addr, len) || listen(ls, 1024)) { perror("listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (!unix_socket) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (c->off == c->len) { /* readable */
                ssize_t r = read(c->fd, c->buf, BUF);
                if (r == 0 || (r < 0 && errno != EAGAIN)) { drop_conn(ep, c); continue; }
                if (r < 0) continue;
                upper(c->buf, (size_t)r);
                c->off = 0;
                c->len = (size_t)r;
            }
            ssize_t w = write(c->fd, c->buf + c->off, c->len - c->off);
            if (w < 0 && errno != EAGAIN) { drop_conn(ep, c); continue; }
            if (w > 0) c->off += (size_t)w;
            struct epoll_event cev = {.events = c->off == c->len ? EPOLLIN : EPOLLOUT, .data.ptr = c};
            if ((events[i].events & EPOLLOUT) != 0 || c->off != c->len)
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
        }
    }
}
