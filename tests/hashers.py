"""A cheap password hash for the test process (Django's default takes about a second).

Same algorithm name as Django's PBKDF2 hasher, and the iteration count is part of each
hash, so the app's own processes (uvicorn, workers) started by tests verify these hashes
with the default hasher.
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1000
