/* The bottle's output on its way to a terminal: see termfilter.h for what passes. */
#include "supervisor/termfilter.h"

#include <stdbool.h>
#include <string.h>

enum {
    S_GROUND,
    S_GROUND_C2,   /* a 0xc2 held: U+0080..U+009F (a C1 control) or not */
    S_ESC,         /* ESC and intermediates held */
    S_CSI,         /* ESC [ ... held */
    S_CSI_DROP,    /* a CSI too long to hold: dropped up to its final byte */
    S_OSC_NUM,     /* ESC ] and digits held */
    S_OSC_PASS,    /* the body of an OSC that passes */
    S_OSC_PASS_C2, /* ... with a 0xc2 held */
    S_STR_DROP,    /* the body of a dropped OSC, DCS, SOS, PM, APC */
    S_STR_DROP_C2,
    S_STR_DROP_ESC,
};

#define ESC 0x1b
#define BEL 0x07
#define CAN 0x18
#define SUB 0x1a
#define OSC_DIGITS 6
#define ESC_INTERMEDIATES 4

/* The string of the dropped sequence is an OSC (BEL ends it) */
#define KIND_OSC 1

void termfilter_init(struct termfilter *f)
{
    memset(f, 0, sizeof(*f));
}

/* UTF-8: the bounds of the next continuation byte (f->u8need > 0), from the lead byte. */
struct u8 {
    uint8_t lo, hi;
};

static uint8_t u8_lead(uint8_t c, struct u8 *b)
{
    b->lo = 0x80;
    b->hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        return 1;
    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0)
            b->lo = 0xa0; /* no overlong (E0 80 9B would be ESC to a lenient decoder) */
        if (c == 0xed)
            b->hi = 0x9f;
        return 2;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0)
            b->lo = 0x90;
        if (c == 0xf4)
            b->hi = 0x8f;
        return 3;
    }
    return 0; /* C0, C1 (overlong), F5..FF: invalid leads; what follows is stray */
}

static bool osc_passes(const uint8_t *digits, size_t n)
{
    unsigned v = 0;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(digits[i] - '0');
    if (n > 1 && digits[0] == '0')
        return false;
    return v == 0 || v == 1 || v == 2 || v == 8;
}

/* A complete CSI in h[0..n) (ESC [ params intermediates final): true when it passes. */
static bool csi_passes(const uint8_t *h, size_t n)
{
    size_t i = 2, pstart, pend;
    uint8_t fin = h[n - 1];
    bool priv, dollar = false, star = false, inter = false;

    priv = n > 3 && h[2] >= 0x3c && h[2] <= 0x3f;
    pstart = i;
    while (i < n - 1 && h[i] >= 0x30 && h[i] <= 0x3f)
        i++;
    pend = i;
    for (; i < n - 1; i++) {
        if (h[i] < 0x20 || h[i] > 0x2f)
            return false; /* a parameter after an intermediate: malformed */
        inter = true;
        dollar |= h[i] == '$';
        star |= h[i] == '*';
    }
    if (fin == 't') {
        /* window operations and reports; only the title stack (22/23 t: vim) passes */
        size_t pl = pend - pstart;
        const uint8_t *p = h + pstart;
        return !priv && !inter && pl >= 2 && p[0] == '2' && (p[1] == '2' || p[1] == '3') &&
               (pl == 2 || p[2] == ';');
    }
    if (dollar && (fin == 'p' || fin == 'u' || fin == 'w'))
        return false; /* DECRQM, DECRQTSR, DECRQPSR */
    if (star && fin == 'y')
        return false; /* DECRQCRA: a checksum of what is on the screen */
    return true;
}

/* A CSI the terminal answers on the input: DSR (n), DA (c), XTVERSION (> q), kitty (? u). */
static bool csi_asks(const uint8_t *h, size_t n)
{
    uint8_t fin = h[n - 1];

    return fin == 'n' || fin == 'c' || (h[2] == '>' && fin == 'q') || (h[2] == '?' && fin == 'u');
}

static size_t emit_held(struct termfilter *f, uint8_t *out, size_t o)
{
    memcpy(out + o, f->hold, f->n);
    o += f->n;
    f->n = 0;
    return o;
}

size_t termfilter_feed(struct termfilter *f, const void *in_, size_t len, void *out_)
{
    const uint8_t *in = in_;
    uint8_t *out = out_;
    size_t i = 0, o = 0;
    struct u8 b = { f->u8lo, f->u8hi };

    while (i < len) {
        uint8_t c = in[i];

        switch (f->state) {
        case S_GROUND:
            /* fast path: plain ASCII text */
            if (c < 0x80 && c != ESC) {
                size_t j = i + 1;
                /* eight bytes at a time: none >= 0x80, none ESC */
                while (len - j >= 8) {
                    uint64_t w, e;
                    memcpy(&w, in + j, 8);
                    e = w ^ 0x1b1b1b1b1b1b1b1bULL;
                    if ((w | ((e - 0x0101010101010101ULL) & ~e)) & 0x8080808080808080ULL)
                        break;
                    j += 8;
                }
                while (j < len && in[j] < 0x80 && in[j] != ESC)
                    j++;
                memcpy(out + o, in + i, j - i);
                o += j - i;
                i = j;
                f->u8need = 0;
                continue;
            }
            /* fall through */
        case S_OSC_PASS: {
            bool body = f->state == S_OSC_PASS;
            i++;
            if (c < 0x80) {
                f->u8need = 0;
                if (c == ESC) {
                    f->hold[0] = ESC;
                    f->n = 1;
                    f->state = S_ESC;
                } else {
                    out[o++] = c;
                    if (body && (c == BEL || c == CAN || c == SUB))
                        f->state = S_GROUND;
                }
            } else if (c < 0xc0) {
                if (f->u8need && c >= b.lo && c <= b.hi) {
                    f->u8need--;
                    b.lo = 0x80;
                    b.hi = 0xbf;
                    out[o++] = c;
                    continue;
                }
                f->u8need = 0;
                if (c >= 0xa0)
                    out[o++] = c; /* a stray continuation byte: harmless */
                else if (body && c == 0x9c) {
                    out[o++] = BEL; /* 8-bit ST: end the string the way every terminal knows */
                    f->state = S_GROUND;
                }
                /* else: a raw C1 control, dropped */
            } else if (c == 0xc2) {
                f->u8need = 0;
                f->hold[0] = c;
                f->n = 1;
                f->state = body ? S_OSC_PASS_C2 : S_GROUND_C2;
            } else {
                f->u8need = u8_lead(c, &b);
                out[o++] = c;
            }
            break;
        }
        case S_GROUND_C2:
        case S_OSC_PASS_C2: {
            bool body = f->state == S_OSC_PASS_C2;
            f->n = 0;
            f->state = body ? S_OSC_PASS : S_GROUND;
            if (c >= 0x80 && c <= 0x9f) {
                i++; /* an encoded C1 control: dropped; an encoded ST ends a passed string */
                if (body && c == 0x9c) {
                    out[o++] = BEL;
                    f->state = S_GROUND;
                }
            } else if (c >= 0xa0 && c <= 0xbf) {
                i++;
                out[o++] = 0xc2;
                out[o++] = c;
            } else {
                out[o++] = 0xc2; /* a broken sequence: the terminal shows U+FFFD */
            }
            break;
        }
        case S_ESC:
            i++;
            if (c == ESC) {
                f->n = 1; /* a new sequence starts */
            } else if (c == CAN || c == SUB) {
                f->n = 0;
                out[o++] = c;
                f->state = S_GROUND;
            } else if (c < 0x20) {
                out[o++] = c; /* executed inside a sequence, which goes on */
            } else if (c == 0x7f) {
                /* ignored */
            } else if (c >= 0x80) {
                f->n = 0;
                f->state = S_GROUND;
                i--;
            } else if (c <= 0x2f) {
                if (f->n < 1 + ESC_INTERMEDIATES)
                    f->hold[f->n++] = c;
                else {
                    f->n = 0;
                    f->state = S_GROUND;
                }
            } else if (f->n == 1 && c == '[') {
                f->hold[f->n++] = c;
                f->state = S_CSI;
            } else if (f->n == 1 && c == ']') {
                f->hold[f->n++] = c;
                f->state = S_OSC_NUM;
            } else if (f->n == 1 && (c == 'P' || c == 'X' || c == '^' || c == '_')) {
                f->n = 0;
                f->osc_kind = 0;
                f->state = S_STR_DROP;
            } else {
                o = emit_held(f, out, o);
                out[o++] = c;
                f->state = S_GROUND;
            }
            break;
        case S_CSI:
        case S_CSI_DROP: {
            bool drop = f->state == S_CSI_DROP;
            i++;
            if (c == ESC) {
                f->hold[0] = ESC;
                f->n = 1;
                f->state = S_ESC;
            } else if (c == CAN || c == SUB) {
                f->n = 0;
                out[o++] = c;
                f->state = S_GROUND;
            } else if (c < 0x20) {
                out[o++] = c;
            } else if (c == 0x7f) {
                /* ignored */
            } else if (c >= 0x80) {
                f->n = 0;
                f->state = S_GROUND;
                i--;
            } else if (c <= 0x3f) {
                if (drop)
                    break;
                if (f->n == TERMFILTER_HOLD - 1) {
                    f->n = 0;
                    f->state = S_CSI_DROP;
                } else {
                    f->hold[f->n++] = c;
                }
            } else {
                if (!drop) {
                    f->hold[f->n++] = c;
                    if (csi_passes(f->hold, f->n)) {
                        f->asked |= csi_asks(f->hold, f->n);
                        o = emit_held(f, out, o);
                    }
                }
                f->n = 0;
                f->state = S_GROUND;
            }
            break;
        }
        case S_OSC_NUM:
            if (c >= '0' && c <= '9' && f->n < 2 + OSC_DIGITS) {
                i++;
                f->hold[f->n++] = c;
            } else if (c == ';' && osc_passes(f->hold + 2, f->n - 2u)) {
                i++;
                o = emit_held(f, out, o);
                out[o++] = c;
                f->u8need = 0;
                f->state = S_OSC_PASS;
            } else {
                /* dropped: the rest of the string goes too; a terminator is looked at there */
                f->n = 0;
                f->osc_kind = KIND_OSC;
                f->state = S_STR_DROP;
                if (c >= 0x20 && c < 0x7f)
                    i++;
            }
            break;
        case S_STR_DROP:
            i++;
            if (c == ESC)
                f->state = S_STR_DROP_ESC;
            else if (c == CAN || c == SUB || (c == BEL && f->osc_kind == KIND_OSC))
                f->state = S_GROUND;
            else if (c == 0xc2)
                f->state = S_STR_DROP_C2;
            break;
        case S_STR_DROP_C2:
            f->state = S_STR_DROP;
            if (c == 0x9c) {
                i++;
                f->state = S_GROUND;
            }
            break;
        case S_STR_DROP_ESC:
            if (c == '\\') {
                i++;
                f->state = S_GROUND;
            } else {
                f->hold[0] = ESC; /* a new sequence: looked at like any other */
                f->n = 1;
                f->state = S_ESC;
            }
            break;
        default:
            f->state = S_GROUND;
            f->n = 0;
            break;
        }
    }
    f->u8lo = b.lo;
    f->u8hi = b.hi;
    return o;
}
