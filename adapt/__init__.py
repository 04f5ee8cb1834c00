"""On-device adaptation (numpy only): MAP logistic regression on frozen feature differences."""

from rfm.adapt.logistic import MAPLogisticRegression, fit_choices
from rfm.adapt.query import rank_queries

__all__ = ["MAPLogisticRegression", "fit_choices", "rank_queries"]
