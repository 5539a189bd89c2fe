"""labelflow's CLI and local runtime: the whole workflow on one machine, on moto, with no AWS account."""
