"""Human review as one contract: records to review in, consolidated labels out.

- in: the review manifest routing writes (`models.records.ReviewItem` per line);
- the task a reviewer sees: `tasks.task_input` (the pre-annotation Lambda);
- one label per record from several answers: `consolidation` (the post-annotation Lambda);
- out: the output manifest, written with `manifests.output_line` and read by merge.

Ground Truth is the deployed backend; the local runtime's backends reuse all of the above, so
routing and merging never know which backend ran.
"""
