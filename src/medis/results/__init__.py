"""What attacks produce, without torch: the record type and its codec (:mod:`~medis.results.records`),
parallel fusion (:mod:`~medis.results.fusion`) and helpers over plain values (:mod:`~medis.results.values`)."""
