-- A Business Central-like database for benchmarks: one general ledger of :ledger_rows rows and
-- 32 columns (text, numeric, timestamp, uuid), plus :small_tables small tables of 40 rows.
-- psql -v ledger_rows=2000000 -v small_tables=900 -f benches/bc_like.sql
\set ON_ERROR_STOP on
CREATE TABLE "Company" ("Name" varchar(30) PRIMARY KEY, "Display Name" varchar(250));
INSERT INTO "Company" VALUES ('CRONUS International Ltd.', 'CRONUS International Ltd.');

CREATE TABLE "CRONUS International Ltd_$G_L Entry" (
  "Entry No_" int8 PRIMARY KEY,
  "G_L Account No_" varchar(20), "Document No_" varchar(20), "Description" varchar(100),
  "Bal_ Account No_" varchar(20), "User ID" varchar(50), "Source Code" varchar(10),
  "External Document No_" varchar(35), "Journal Batch Name" varchar(10), "Reason Code" varchar(10),
  "Source No_" varchar(20),
  "Amount" numeric(38,20), "Debit Amount" numeric(38,20), "Credit Amount" numeric(38,20),
  "VAT Amount" numeric(38,20), "Additional-Currency Amount" numeric(38,20),
  "Add_-Currency Debit Amount" numeric(38,20), "Add_-Currency Credit Amount" numeric(38,20),
  "Quantity" numeric(38,20), "Non-Deductible VAT Amount" numeric(38,20), "Source Currency Amount" numeric(38,20),
  "Posting Date" timestamp, "Document Date" timestamp, "VAT Reporting Date" timestamp,
  "Last Modified DateTime" timestamp, "$systemCreatedAt" timestamp, "$systemModifiedAt" timestamp,
  "$systemId" uuid, "Dimension Set GUID" uuid,
  "Document Type" int4, "Dimension Set ID" int4, "Transaction No_" int4
);
INSERT INTO "CRONUS International Ltd_$G_L Entry"
SELECT i,
  (1000 + i % 90 * 100)::text, 'G' || lpad((i / 3)::text, 8, '0'), 'Posting ' || i || ' Büro',
  (2000 + i % 30)::text, 'CONTOSO\ADMIN', 'GENJNL', 'EXT-' || i, 'DEFAULT', 'R' || i % 7, 'S' || i % 1000,
  (i % 200000 - 100000) / 100.0, (i % 100000) / 100.0, (i % 77777) / 100.0, (i % 5555) / 100.0,
  (i % 123456) / 1000.0, (i % 99999) / 100.0, (i % 88888) / 100.0, i % 17, (i % 333) / 10.0,
  (i % 444444) / 100.0,
  timestamp '2020-01-01' + (i % 2000) * interval '1 day', timestamp '2020-01-01' + (i % 1999) * interval '1 day',
  timestamp '2020-01-01' + (i % 1998) * interval '1 day', timestamp '2024-01-01' + i * interval '1 second',
  timestamp '2024-01-01' + i * interval '2 second', timestamp '2024-01-01' + i * interval '3 second',
  md5(i::text)::uuid, md5((i % 5000)::text)::uuid,
  i % 4, i % 500, i / 10
FROM generate_series(1, :ledger_rows) AS i;

DO $$
DECLARE n int := current_setting('bench.small_tables')::int;
BEGIN
  FOR t IN 1..n LOOP
    EXECUTE format('CREATE TABLE %I ("No_" varchar(20) PRIMARY KEY, "Name" varchar(100), "Amount" numeric(38,20), "Posting Date" timestamp, "$systemId" uuid)',
      'CRONUS International Ltd_$Setup Table ' || t);
    EXECUTE format('INSERT INTO %I SELECT lpad(i::text, 5, ''0''), ''Row '' || i, i / 3.0, timestamp ''2024-01-01'' + i * interval ''1 hour'', md5(%L || i)::uuid FROM generate_series(1, 40) i',
      'CRONUS International Ltd_$Setup Table ' || t, t::text);
  END LOOP;
END $$;
ANALYZE;
