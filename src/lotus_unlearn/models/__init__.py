"""Model registry: `create_model(name, num_classes=..., in_channels=..., image_size=...)`."""

from lotus_unlearn.models import cnn, resnet, vit  # noqa: F401  (register the built-in models)
from lotus_unlearn.models.registry import MODELS, check_model, create_model, register_model, reinitialized_copy

__all__ = ["MODELS", "check_model", "create_model", "register_model", "reinitialized_copy"]
