"""Regrades with a preview: a changed grader run over every learner's newest revision, then applied or discarded."""
