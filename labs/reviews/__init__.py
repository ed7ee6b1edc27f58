"""Code review of lab revisions: a reviewer reads the code and the grader's evidence, scores the lab's rubric,
comments, and approves or requests changes. The loop repeats until a revision is approved."""
