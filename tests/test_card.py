"""The dataset card names the toolkit and its version and links nowhere it can't back up."""

import re
from collections import Counter

from agentinstruct.generate.export import FEATURES, dataset_card

from agentinstruct.records import QUESTION_COLUMNS


def test_card_has_no_placeholder_link_and_names_the_version():
    manifest = {"splits": ["rc", "rejected"], "teacher": "t", "recipe_hash": "h", "skills": ["rc"],
                "input": "docs", "ingest": {"seeds": 3}, "versions": {"agentinstruct": "1.2.3"}}
    card = dataset_card(manifest, {"rc": Counter(accepted=2, rejected=1)})
    assert "agentinstruct toolkit, version 1.2.3" in card
    links = re.findall(r"\]\(([^)]*)\)", card) + re.findall(r"https?://\S+", card)
    assert not [u for u in links if re.search(r"example\.(com|org)|^https?://github\.com/?\)?$|placeholder", u)], links
    # the question provenance columns are exported and described
    for col in QUESTION_COLUMNS:
        assert col in FEATURES and f"`{col}`" in card
