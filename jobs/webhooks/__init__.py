"""Messages i2v sends out about jobs: an outbox, its formats, its delivery.

* ``outbox``: the rows to send are written in the same transaction as the
  job's transition (a start or an ending), with their URL and body fixed
  there (a crash can neither lose a message nor invent one, and every retry
  sends the same bytes);
* ``formats``: what each kind of receiver expects: Standard Webhooks for
  users' endpoints and jobs' own callback URLs, the original I2V API's
  G.A.M.E callback for jobs made through ``/api/v1/i2v``;
* ``signing``: ``whsec_`` secrets, ``v1,`` signatures, rotation;
* ``endpoints``: what users register (checked once here for every surface),
  and ``attach_job_callback`` for a job's own URL;
* ``dispatch``: handing due deliveries to the workers, capped per receiver
  and in all, so a receiver that hangs cannot take the queue;
* ``transport``: one POST to an address-checked, pinned connection, no
  redirects, with a deadline;
* ``delivery``: one attempt on a worker, recorded, and the retry schedule.
"""
