"""Numbers for the load benchmark: percentiles, Prometheus histograms, /proc readings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts of one Prometheus histogram series."""

    bounds: tuple[float, ...]  # upper bounds, ascending, +Inf last
    counts: tuple[float, ...]  # cumulative

    def minus(self, earlier: Histogram) -> Histogram:
        return Histogram(
            self.bounds, tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        )

    @property
    def total(self) -> float:
        return self.counts[-1] if self.counts else 0.0

    def quantile(self, q: float) -> float:
        """Linear interpolation within the bucket, as PromQL's histogram_quantile."""
        total = self.total
        if total <= 0:
            return math.nan
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound
                width = count - lower_count
                share = (rank - lower_count) / width if width else 0.0
                return lower_bound + (bound - lower_bound) * share
            lower_bound, lower_count = bound, count
        return lower_bound

    def max_bound(self) -> float:
        """Upper bound of the highest non-empty bucket: the max is at most this."""
        previous = 0.0
        highest = 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if count > previous:
                highest = bound
            previous = count
        return highest

    def count_above(self, threshold: float) -> float:
        """Observations above ``threshold`` (which should be a bucket bound)."""
        below = 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if bound <= threshold:
                below = count
        return self.total - below


@dataclass(frozen=True, slots=True)
class Scrape:
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], Histogram]
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def histogram(self, name: str, **labels: str) -> Histogram:
        return self.histograms.get((name, tuple(sorted(labels.items()))), Histogram((), ()))

    def value(self, name: str, **labels: str) -> float:
        return self.values.get((name, tuple(sorted(labels.items()))), 0.0)


def merge(scrapes: Sequence[Scrape]) -> Scrape:
    """One scrape for several worker processes: counts and buckets add up."""
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], Histogram] = {}
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for scrape in scrapes:
        for key, histogram in scrape.histograms.items():
            known = histograms.get(key)
            histograms[key] = (
                histogram
                if known is None
                else Histogram(
                    histogram.bounds,
                    tuple(a + b for a, b in zip(known.counts, histogram.counts, strict=True)),
                )
            )
        for key, value in scrape.values.items():
            values[key] = values.get(key, 0.0) + value
    return Scrape(histograms, values)


def parse_metrics(text: str) -> Scrape:
    buckets: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                labels = {k: v for k, v in sample.labels.items() if k != "le"}
                key = (family.name, tuple(sorted(labels.items())))
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
            else:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    histograms = {
        key: Histogram(tuple(b for b, _ in sorted(pairs)), tuple(c for _, c in sorted(pairs)))
        for key, pairs in buckets.items()
    }
    return Scrape(histograms, values)


def pair_latencies(sent: Iterable[float], heard: Iterable[float], window: float) -> list[float]:
    """For each thing heard, the time since the latest send before it (within ``window``)."""
    sends = sorted(sent)
    out: list[float] = []
    for at in sorted(heard):
        earlier = [s for s in sends if s <= at and at - s <= window]
        if earlier:
            out.append(at - earlier[-1])
    return out
