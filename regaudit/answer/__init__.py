"""The answer: outcomes, statistics, findings, diagnoses, the article's claims."""
