"""Signal models: six families behind one interface, their metrics and a long-short evaluation.

- :mod:`amcp.models.base`: the :class:`~amcp.models.base.SignalModel` protocol,
  :func:`~amcp.models.base.create_model` and :func:`~amcp.models.base.load_model`;
- :mod:`amcp.models.tabular`: random forest, SVM, XGBoost, LightGBM;
- :mod:`amcp.models.sequence`: LSTM and Transformer (torch);
- :mod:`amcp.models.metrics`: IC, rank IC, ICIR, sign accuracy, AUC;
- :mod:`amcp.models.evaluate`: the long-short backtest, baselines, leaderboard and chart.

Nothing heavy is imported here: each family's library loads when the family is first used.
"""

from amcp.models.base import FAMILIES, ModelError, SignalModel, create_model, load_model

__all__ = ["FAMILIES", "ModelError", "SignalModel", "create_model", "load_model"]
