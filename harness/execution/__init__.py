"""Execution: a job's kind to its workload (`kinds`), child processes here (`runner`) or as Ray tasks."""
