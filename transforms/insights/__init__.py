"""The insights task: a JSON Schema, prompts asking for it, and model answers checked against it.

Pure modules, no Beam: ``schemas`` loads and checks the schema, ``prompts`` writes the schema
instructions and the repair note, ``answers`` pulls the JSON object out of a model answer and
validates it.
"""
