"""Human review as one contract: records to review in, consolidated labels out.

Ground Truth is the deployed backend; the local runtime's backends reuse the same task-input and
consolidation code, so routing and merging never know which backend ran.
"""
