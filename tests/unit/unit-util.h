/* What several unit tests share: loopback sockets for an in-process origin and its clients, and
 * reading the audit log's lines (a line with "count":N stands for N decisions). Failures are
 * cmocka assertions. Linked into every unit test (tests/unit/meson.build). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/net.h"
#include "unit-util.h"

/* 127.0.0.1 port 0: the kernel picks a free port (net_addr_parse() refuses port 0). */
void loopback_any(struct net_addr *a);

/* A non-blocking TCP listener on 127.0.0.1 at a port the kernel picks (*ret_port). */
int listen_loopback(int backlog, uint16_t *ret_port);

/* A TCP connection to 127.0.0.1:port, made blocking, then set non-blocking. */
int connect_loopback(uint16_t port);

/* Removes path and everything below it (rm -rf): 0, or -1 when rm failed. For the tests' own
 * mkdtemp directories. */
int rm_rf(const char *path);

/* The descriptors this process has open (/proc/self/fd), to check that nothing leaked. */
int count_fds(void);

/* CLOCK_MONOTONIC in milliseconds: real time, for bounding a wait or printing a rate (the
 * loops under test run on fake clocks). */
uint64_t real_ms(void);

/* How many decisions one audit line stands for: its "count", 1 without one. */
uint64_t audit_line_count(const char *line);

/* Sum of the decisions the audit lines of `log` containing `needle` stand for; *ret_lines gets
 * the number of such lines. */
uint64_t audit_decisions(const char *log, const char *needle, size_t *ret_lines);
