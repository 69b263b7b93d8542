"""Drift: a version's training profile (profile.json), the counts its served rows add up to,
and the windows whose PSI against the profile says whether the data moved."""
