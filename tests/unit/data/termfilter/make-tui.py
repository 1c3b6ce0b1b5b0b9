#!/usr/bin/env python3
"""Writes tui.out: what a full-screen agent (Ink, ratatui, prompt_toolkit, crossterm)
typically prints, for the terminal filter's benign corpus (tests/unit/test-termfilter.c)."""
import sys

E = "\x1b"
CSI = E + "["
out = []
w = out.append
w(CSI + "?1049h" + CSI + "?25l" + CSI + "?2004h" + CSI + "?1004h")      # alt screen, paste, focus
w(CSI + "?1000h" + CSI + "?1002h" + CSI + "?1003h" + CSI + "?1006h")     # mouse modes
w(CSI + ">1u" + CSI + "?u" + CSI + "=1;1u")                              # kitty keyboard
w(CSI + "6n" + CSI + "c" + CSI + ">c" + CSI + ">0q")                     # DSR, DA1, DA2, XTVERSION
w(E + "]0;claude \u2014 project\x07" + E + "]2;agent: editing src/main.c" + E + "\\")
w(E + "]1;icon\x07")
w(CSI + "22;0t" + CSI + "22;2t")
w(CSI + "2 q" + CSI + "?12h")                                            # cursor shape, blink
w(E + "7" + E + "8" + E + "=" + E + ">" + E + "(0lqqk" + E + "(B" + E + "M" + E + "D")
w(CSI + "1;30r" + CSI + "H" + CSI + "2J" + CSI + "3J" + CSI + "K" + CSI + "1K" + CSI + "2K")
for row in range(1, 29):
    w(CSI + f"{row};1H")
    w(CSI + "?2026h")                                                    # synchronized output
    w(CSI + f"38;5;{(row * 7) % 256}m" + CSI + f"48;2;{row};{row * 3};{row * 9 % 256}m")
    w(f"{row:3} \u2502 ")
    w(CSI + "1m" + "bold" + CSI + "22m " + CSI + "3m" + "italic" + CSI + "23m ")
    w(CSI + "4:3m" + CSI + "58;2;255;0;0m" + "curly" + CSI + "59m" + CSI + "24m ")
    w("caf\u00e9 \u00a3 \u00a9 \u00b0 \u00bd \u00ff \u0100 \u4e2d\u6587 \U0001f600 \u2714 \u2500\u2500\u256d\u256e ")
    w(E + "]8;;https://example.invalid/doc/" + str(row) + E + "\\" + "link" + E + "]8;;" + E + "\\ ")
    w(E + "]8;id=x" + str(row) + ";file:///tmp/x\x07" + "file" + E + "]8;;\x07")
    w(CSI + "0m" + CSI + "K" + CSI + "C" + CSI + "3D" + CSI + "2A" + CSI + "2B" + CSI + f"{row}G")
    w(CSI + "?2026l" + "\r\n")
w(CSI + "S" + CSI + "T" + CSI + "2L" + CSI + "2M" + CSI + "4@" + CSI + "3P" + CSI + "2X")
w(CSI + "23;0t" + CSI + "!p" + CSI + "?1003l" + CSI + "?1006l" + CSI + "?1000l")
w(CSI + "<u" + CSI + "?2004l" + CSI + "?1004l" + CSI + "?25h" + CSI + "?1049l")
w("\tdone \x08\x07\n")
sys.stdout.buffer.write("".join(out).encode())
