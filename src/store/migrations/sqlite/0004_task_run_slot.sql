-- The schedule slot a periodic run belongs to (NULL for runs started by hand): with the unique
-- index, nodes sharing this database run each slot of each job once.

ALTER TABLE modobox_task_run ADD COLUMN slot datetime NULL;
CREATE UNIQUE INDEX modobox_task_run_slot_idx ON modobox_task_run (task, slot);
