"""Learning from verdicts on the device: a new head fitted on the last-token states the bundle already
computes, written as a new version of a model store, run only when a held-out replay says it is better.

``graphs`` finds the head in a bundle's graph and writes it again, ``features`` replays clips once for their
states (cached), ``fit`` fits a head in numpy, ``gate`` replays held-out clips with both heads, ``versions``
keeps the store, ``update`` does one update end to end (docs/review.md). No torch: onnx and numpy.
"""
