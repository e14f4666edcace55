"""Names of artifacts and columns that more than one stage reads: written at training, read by serving and
monitoring."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:

    pass


REFERENCE_ARTIFACT = "reference/reference.parquet"

PREDICTION = "prediction"
