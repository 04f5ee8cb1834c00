"""On-device adaptation (numpy only): MAP logistic regression on frozen feature differences."""

from rfm.adapt.logistic import ConvergenceWarning, MAPLogisticRegression, fit_choices
from rfm.adapt.mixture import MixtureMAPLogisticRegression
from rfm.adapt.query import choose_questions, rank_queries
from rfm.adapt.user import UserAdapter

__all__ = ["ConvergenceWarning", "MAPLogisticRegression", "MixtureMAPLogisticRegression", "UserAdapter",
           "choose_questions", "fit_choices", "rank_queries"]
