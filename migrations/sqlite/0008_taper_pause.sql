-- A paused taper keeps the step in force on the day it paused: steps dated after `paused_on` are not
-- in force (and the daily run applies none) until the physician resumes, which moves them later by the
-- length of the pause. Null when the plan is not paused.
alter table taper_plans add column paused_on date;
