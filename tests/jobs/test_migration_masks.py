"""The in-place migration from the original notebooks, read through the column masks.

Their AWS KMS layout (moto) with legacy cells under DEK versions 1 and 2; after the import,
our SQL layer is deployed beside theirs and the table's mask switched to ours; at every
step (before the switch, after it, after re-encryption, after the legacy keys are retired)
members read every plaintext and non-members none, through the rendered decrypt SQL.
"""

from __future__ import annotations

import pytest

from envelope_encryption.config import Settings
from tests.support.aws_fixtures import REGION
from tests.support.legacy_data import kms_notebook_layout, migrate_through_masks

CATALOG, MS = "mig_masks", "ms-masks"


@pytest.mark.slow
def test_kms_notebooks_migrate_in_place_through_the_masks(spark, kms, kms_url):
    table, names = kms_notebook_layout(spark, kms, CATALOG, MS)
    settings = Settings(backend="aws-kms", catalog=CATALOG, schemas=("sales",),
                        metastore_id=MS,
                        options={"aws-region": REGION, "aws-endpoint-url": kms_url,
                                 "kms-key-alias": f"alias/envelope_encryption/{MS}/{CATALOG}/kek"})
    counts = migrate_through_masks(spark, settings, CATALOG, table, names, legacy_versions=2)
    assert counts == {"beside theirs": 6, "switched": 6, "re-encrypted": 6,
                      "legacy retired": 6}
