"""On-device adaptation (numpy only): MAP logistic regression on frozen feature differences."""

from rfm.adapt.logistic import MAPLogisticRegression
from rfm.adapt.query import rank_queries

__all__ = ["MAPLogisticRegression", "rank_queries"]
