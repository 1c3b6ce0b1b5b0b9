/*
 * Connection hand-off: the namespace backend's fast path for proxy connections.
 *
 * In a namespace bottle, bottle-init and the egress daemon run on the same kernel, so instead
 * of relaying every byte of a connection to A:3128 over the multiplexed channel (two user-space
 * copies on each side), bottle-init passes the accepted TCP socket itself to this bottle's
 * egress daemon over a dedicated SOCK_SEQPACKET socketpair (SCM_RIGHTS). The daemon then
 * serves it like a connection it accepted. The egress decision stays on the host; DNS and the
 * microvm backend keep using the channel.
 *
 * Wire format: each message is exactly one byte ('C') carrying exactly one descriptor.
 * The receiver treats the descriptor as hostile: anything but a connected TCP socket
 * (AF_INET/AF_INET6, SOCK_STREAM, IPPROTO_TCP, not listening) is closed, a message with more
 * than one descriptor or truncated control data is refused (and its descriptors closed).
 */
#pragma once

/* Send fd (not consumed) over sock. Returns 0, -EAGAIN (queue full: try the channel), or
 * -errno (the receiver is gone: EPIPE, ECONNREFUSED...). */
int handoff_send(int sock, int fd);

/*
 * Receive one message. Returns 1 and *ret_fd (a checked TCP socket, close-on-exec, owned by the
 * caller), 0 when nothing is pending (EAGAIN), -EPIPE at EOF (the sender is gone), -EBADMSG
 * for a malformed message or a descriptor that is not a connected TCP socket (nothing is
 * returned; the message is consumed), or another -errno.
 */
int handoff_recv(int sock, int *ret_fd);

/*
 * The same for the supervisor's relay socket (a daemon holding credentials listens on no TCP
 * port: the host relay hands it each proxy stream of the channel as one end of a unix stream
 * socketpair): also accepts a connected AF_UNIX SOCK_STREAM socket.
 */
int handoff_recv_relay(int sock, int *ret_fd);
