"""Messages i2v sends out when a job ends: an outbox, its formats, its delivery.

* ``outbox``: the row to send is written in the same transaction as the job's
  final transition, with its URL and body fixed there (a crash can neither
  lose a message nor invent one, and every retry sends the same bytes);
* ``formats``: what each kind of receiver expects (today the original I2V
  API's G.A.M.E callback);
* ``transport``: one POST to an address-checked, pinned connection, no
  redirects, with a deadline;
* ``delivery``: one attempt on a worker, recorded, and the retry schedule.
"""
