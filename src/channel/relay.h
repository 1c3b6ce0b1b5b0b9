/*
 * The two ends of a bottle channel, built on struct mux (channel/mux.h).
 *
 * Guest (bottle-init, inside the bottle): listens on A:3128 (TCP, proxy) and A:53 (TCP and
 * UDP, DNS) and carries every connection, and every UDP client address's datagrams, as a
 * stream over the channel fd. The guest never names a destination: it only says which kind
 * of stream it wants.
 *
 * Host (per-bottle supervisor): for each stream the guest opens, connects to this bottle's
 * egress daemon (the proxy address for TCP_PROXY, the DNS address for TCP_DNS and UDP_DNS)
 * and to nothing else.
 *
 * Fail closed: when the channel dies, every relayed connection is reset, `dead` is called
 * once (stop the bottle), and the guest relay keeps accepting only to reset new connections
 * at once (and drops datagrams), so clients fail fast instead of hanging.
 */
#pragma once

#include <stdbool.h>

#include "channel/mux.h"
#include "common/limits.h"
#include "common/loop.h"
#include "common/net.h"

#define CHANNEL_PROXY_PORT 3128
#define CHANNEL_DNS_PORT 53
/* CHANNEL_MAX_UDP_FLOWS and CHANNEL_UDP_IDLE_MS: common/limits.h */

struct channel_guest_relay;
struct channel_host_relay;

struct channel_guest_config {
    struct net_addr proxy; /* TCP listen address for the proxy, A:3128 */
    struct net_addr dns;   /* TCP and UDP listen address for DNS, A:53 (port 0: ephemeral,
                              and the TCP and UDP ports may then differ) */
    /* The channel died (err as for mux_ops.dead): stop the bottle. Optional. */
    void (*dead)(void *userdata, int err);
    /* The host opened a stream (CHANNEL_KIND_EXEC or _STATUS): as mux_ops.open_stream (return
     * one end of a socketpair, or -errno to refuse). Optional: NULL refuses them all. */
    int (*open_stream)(void *userdata, enum channel_kind kind);
    void *userdata;
    /* >= 0: hand proxy connections to the daemon over this SOCK_SEQPACKET socket
     * (channel/handoff.h) instead of relaying them; -1: relay everything. Not owned. */
    int handoff_fd;
};

/* Fill cfg for alias A (numeric IPv4/IPv6 address text): A:3128 and A:53, no callback. */
int channel_guest_config_init(struct channel_guest_config *cfg, const char *alias);

/*
 * Start the guest relay: a guest-role mux over mux_fd (owned from now on, closed on failure)
 * and the three listening sockets. Returns 0 and *ret, or -errno (nothing left running).
 */
int channel_guest_relay_start(struct loop *loop, int mux_fd, const struct channel_guest_config *cfg,
                              struct channel_guest_relay **ret);
/* Stop: close listeners, the channel and every stream; no dead callback. NULL is fine. */
struct channel_guest_relay *channel_guest_relay_free(struct channel_guest_relay *r);
/*
 * The address a listener is bound to (for ephemeral ports in tests): kind TCP_PROXY, TCP_DNS
 * or UDP_DNS. Returns 0 or -errno.
 */
int channel_guest_relay_addr(struct channel_guest_relay *r, enum channel_kind kind,
                             struct net_addr *ret);
bool channel_guest_relay_dead(const struct channel_guest_relay *r);
/* The underlying mux (stats); NULL once the relay is freed. */
struct mux *channel_guest_relay_mux(struct channel_guest_relay *r);

struct channel_host_config {
    struct net_addr proxy; /* the egress daemon's proxy, A:3128 on the host */
    /* true: proxy streams are not connected to `proxy` but handed to the daemon as one end of
     * a unix stream socketpair over proxy_handoff_fd (a SOCK_SEQPACKET socket, not owned;
     * channel/handoff.h): a daemon holding credentials has no TCP listener. */
    bool proxy_via_handoff;
    int proxy_handoff_fd;
    struct net_addr dns; /* the egress daemon's DNS filter, A:53 on the host (TCP and UDP) */
    void (*dead)(void *userdata, int err);
    void *userdata;
};

/*
 * Start the host relay: a host-role mux over mux_fd (owned from now on, closed on failure).
 * Each OPEN is connected (non-blocking) to cfg->proxy or cfg->dns by kind; a failed connect
 * is answered with RESET(REFUSED). Returns 0 and *ret, or -errno.
 */
int channel_host_relay_start(struct loop *loop, int mux_fd, const struct channel_host_config *cfg,
                             struct channel_host_relay **ret);
struct channel_host_relay *channel_host_relay_free(struct channel_host_relay *r);
bool channel_host_relay_dead(const struct channel_host_relay *r);
struct mux *channel_host_relay_mux(struct channel_host_relay *r);
