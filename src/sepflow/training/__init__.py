"""Training: chronological segments, per-family fitting with tuning, calibration and thresholds, artifacts.

``train_family`` is the library function a ``train@FAMILY`` stage calls; ``load_trained`` reads
its folder back for prediction. With ``train.scope: per_symbol`` the stage calls
``train_per_symbol`` (one model per ticker) and ``load_routed`` reads the per-ticker models back
behind one ``predict_frame``; ``load_served`` reads either layout. The MLflow pyfunc wrapper lives in ``sepflow.training.pyfunc``
(imported on demand: it imports MLflow).
"""
