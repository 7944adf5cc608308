"""MLflow models-from-code entry: MLflow runs this file to build the pyfunc model, so nothing is pickled.

Never imported by sepflow itself (``set_model`` at import is the point); ``sepflow.training.pyfunc``
names it as ``python_model``.
"""

from mlflow.models import set_model

from sepflow.training.pyfunc import TrainedPyfunc

set_model(TrainedPyfunc())
