"""Catching bad writes as they happen: features, detectors, calibration and incidents.

Everything here is pure and deterministic: a transaction's changes become ``TxFeatures``
(``features``), detectors learn and score them online (``stats``, contract in ``base``),
scores share one [0, 1] scale (``calibrate``) and anomalous transactions are grouped into
incidents (``incidents``). Event commit times are the only clock, so replaying the same
changes always gives the same incidents.
"""
