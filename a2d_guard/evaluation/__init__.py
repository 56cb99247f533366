"""The A2D paper's evaluation protocol (DESIGN §11): attacks x decoding orders x thresholds.

``data`` reads the public attack and over-refusal sets, ``attacks`` turns a row into a
canvas, ``judges`` scores what was generated at mask positions, ``metrics`` aggregates,
``run`` drives every request through the engine and writes ``eval.json``.
"""
