CREATE TABLE IF NOT EXISTS event_log(execution_template_name varchar(256), instance_id varchar(128) PRIMARY KEY, created_at TIMESTAMP, last_modified TIMESTAMP, status varchar(64));
DROP TABLE IF EXISTS event_log_new;
CREATE TABLE event_log_new (execution_template_name varchar(256), instance_id varchar(128) PRIMARY KEY, created_at TIMESTAMP, last_modified TIMESTAMP, status varchar(64));
INSERT INTO event_log_new
SELECT "execution_templates"."name" as "execution_template_name", "execution_context"."context$processid" as "instance_id", "execution_context"."metadata$createdAt" as "created_at", "execution_context"."metadata$updatedAt" as "last_modified", "execution_context"."status" as "status"
from "execution_templates", "execution_context" where "execution_context"."context$executionTemplateID" = "execution_templates"."id";
MERGE INTO event_log USING event_log_new ON event_log_new.instance_id = event_log.instance_id
WHEN MATCHED THEN UPDATE SET last_modified = event_log_new.last_modified, status = event_log_new.status
WHEN NOT MATCHED THEN INSERT (execution_template_name, instance_id, created_at, last_modified, status) VALUES (event_log_new.execution_template_name, event_log_new.instance_id, event_log_new.created_at, event_log_new.last_modified, event_log_new.status);
