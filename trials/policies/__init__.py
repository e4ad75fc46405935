"""Who may see and do what, per trial. Every interface (admin, pages, API, downloads, tasks) asks here.

- ``access``: a user's membership in a trial and the capabilities its role grants.
- ``sites``: which sites' participants a user may see (site scoping; a user with no site sees none).
- ``blinding``: who may see treatment assignment, for the whole trial or for one emergency-unblinded
  participant, and which fields carry it.
"""
