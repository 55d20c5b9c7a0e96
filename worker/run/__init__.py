"""Where one run happens.

- `run.Run`: one run, from the transaction that opens it to the line that reports it;
- `begin`: that opening transaction (lock, claim, record);
- `batch`: where a batch is written, with the run's progress and the job's state;
- `loader`: the INSERT … ON CONFLICT statement a batch is written with;
- `state`: how a job's saved state (its cursor) advances;
- `context`: what a job receives; `request`: what a run is asked to do;
- `refusals`: a request or a resume no run can serve, settled once as a `refused` run;
- `active`: the runs in progress in this process; `errors`: why a run failed or was skipped.
"""
