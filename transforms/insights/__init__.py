"""``--task insights``: the JSON Schema an answer must match (``schemas``), the words that ask
for it (``prompts``), answers pulled out and validated (``answers``), the typed sink column the
schema gives (``columns``), and the counts over insights rows (``tally``, pure; ``aggregate``,
Beam: ``AggregateInsights``).

Imports ``core`` only.
"""
