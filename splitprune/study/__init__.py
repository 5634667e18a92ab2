"""Design-space studies: a declarative grid of estimate/split/prune/plan runs on an executor.

Sits above :mod:`splitprune.split`, :mod:`splitprune.prune` and :mod:`splitprune.plan` (none of which
imports it):

- :mod:`.spec`: the study file (:class:`StudySpec`), expanded into :class:`Job` s with stable ids.
- :mod:`.pricing`: the one place a job's mode, precision and power mode become a board profile.
- :mod:`.jobs`: :func:`run_job` (one job through the library API) and the flattened result row.
- :mod:`.entry`: fine-tune-and-evaluate entry points (``package.module:function``) for workers.
- :mod:`.executors`: ``sequential``, ``local`` (process pool) and ``ray`` behind one interface.
- :mod:`.store`: one result file per job, resume, Parquet/CSV tables and a summary.
- :mod:`.run`: :func:`run_study` and its :class:`StudyReport` (``splitprune.study/1``).
"""

from __future__ import annotations

from .executors import make_executor as make_executor
from .run import StudyReport as StudyReport
from .run import run_study as run_study
from .spec import Job as Job
from .spec import StudySpec as StudySpec
from .spec import expand as expand
from .spec import load_study as load_study
