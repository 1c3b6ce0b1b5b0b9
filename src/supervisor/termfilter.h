/*
 * What the bottle prints on its way to the user's terminal (docs/supervisor.md, "The
 * terminal filter"): a streaming filter that drops the escape sequences that make a terminal
 * act on the host's behalf or answer back with what the bottle chose, and keeps everything a
 * full-screen program needs.
 *
 * Dropped (replaced with nothing): OSC other than 0, 1, 2 (titles) and 8 (hyperlinks): OSC 52
 * (clipboard), 50 (font), 5x, 7, 9, 1337 (iTerm2 files, clipboard), colour queries, ...; every
 * DCS (DECRQSS, XTGETTCAP, tmux passthrough, sixel), SOS, PM and APC (kitty graphics, which
 * can read host files); CSI ... t (window operations and title/size reports) except 22/23 t
 * (title stack); CSI ... $ p (DECRQM), $ u, $ w, * y (DECRQCRA: a checksum of the screen);
 * C1 controls, raw (a byte 0x80..0x9f outside a UTF-8 sequence) or UTF-8 encoded
 * (U+0080..U+009F), which 8-bit-aware terminals take as CSI/OSC/DCS/ST; a CSI longer than
 * TERMFILTER_HOLD bytes.
 * Kept: text (UTF-8), C0 controls, SGR, cursor movement, erase, scrolling regions, modes (alt
 * screen, bracketed paste, mouse, focus), DSR/DA (CSI 6n, CSI c: replies of the terminal's own
 * making go to the bottle's input), other ESC sequences (charsets, keypad, save/restore).
 *
 * The parser follows a DEC/xterm terminal's: ESC starts a new sequence anywhere, CAN/SUB
 * abort one, C0 controls inside a sequence act and are passed. State is bounded: at most
 * TERMFILTER_HOLD bytes of a sequence not yet decided are held across calls; strings (OSC
 * bodies, DCS) are passed or dropped as they stream, never buffered.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define TERMFILTER_HOLD 128

struct termfilter {
    uint8_t state;
    uint8_t u8need;     /* UTF-8 continuation bytes still expected (ground, OSC body) */
    uint8_t u8lo, u8hi; /* ... and the bounds of the next one */
    uint8_t osc_kind;   /* a dropped string: an OSC (BEL ends it) or not */
    uint8_t asked;      /* a query the terminal answers (DSR, DA, ...) was let through */
    uint16_t n;         /* bytes held */
    uint8_t hold[TERMFILTER_HOLD];
};

void termfilter_init(struct termfilter *f);
/*
 * Filters len bytes of in into out, which has room for len + TERMFILTER_HOLD bytes (held
 * bytes of an earlier call may come out now). Returns the number of bytes written.
 */
size_t termfilter_feed(struct termfilter *f, const void *in, size_t len, void *out);
