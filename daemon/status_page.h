/*
 * status_page.h - the operator's views of one lokrd process: GET /metrics
 * (Prometheus text), GET /v1/status (the same figures as one JSON object)
 * and GET / (an HTML status page, no external assets, whose inline script
 * polls /v1/status).  Loop thread only.
 */
#ifndef LOKRD_STATUS_PAGE_H
#define LOKRD_STATUS_PAGE_H

#include "http.h"

void lokrd_route_metrics(lokrd_req *r);
void lokrd_route_status(lokrd_req *r);
void lokrd_route_status_page(lokrd_req *r);

#endif
