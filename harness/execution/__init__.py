"""Execution: a job's kind to its workload (`kinds`), child processes here (`runner`, `child`) or as
Ray tasks, and the compile caches a validation child may reuse (`caches`)."""
